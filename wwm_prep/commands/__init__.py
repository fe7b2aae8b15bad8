"""The command line's commands, one module per concern; `wwm_prep.cli` puts them in one group."""
