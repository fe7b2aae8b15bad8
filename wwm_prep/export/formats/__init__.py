"""Export formats, one module each; a module that defines `FORMAT` (an `export.base.ExportFormat`) is a format."""
