"""The running service: sync cycles, watch mode, signals, and what each CLI mode does."""
