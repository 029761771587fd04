"""Training recipes: explicit build-model, build-data, train, evaluate, save."""
