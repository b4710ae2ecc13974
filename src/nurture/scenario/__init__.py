"""The scenario language: model, loader and validation, expressions, compiler, graph."""
