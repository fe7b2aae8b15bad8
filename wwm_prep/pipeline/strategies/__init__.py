"""Packing strategies, one module each: a module that defines `STRATEGY` (a `base.Strategy`) is one (see `base`)."""
