"""A fake decoder for generation tests: next-token logits depend on the last token only."""

import torch


class LastTokenModel:
    """``step`` returns ``logits[last token]`` (V,) per row.

    The cache records every row's history and is reordered like a KV cache, so a wrong
    ``reorder`` in beam search shows up as a history that does not match the hypothesis.
    """

    def __init__(self, logits: torch.Tensor):
        self.table = logits

    class Cache:
        def __init__(self):
            self.history = None

        def reorder(self, index, keep_source=False):
            if self.history is not None:
                self.history = self.history.index_select(0, index)

    def step(self, tokens, cache, token_mask=None):
        cache.history = tokens if cache.history is None else torch.cat([cache.history, tokens], 1)
        return self.table[tokens]
