"""``python -m polyformer.apps ...`` runs the ``polyformer`` command (used by the torchrun launcher)."""

from polyformer.apps.cli import main

if __name__ == "__main__":
    main()
