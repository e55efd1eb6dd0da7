"""semcore: the sparse semantic representation of unconditional UNet denoisers."""
