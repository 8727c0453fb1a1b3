"""The file side: reading manifest files (and the Git commit) from the capabilities directory."""
