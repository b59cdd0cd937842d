"""Linux kernel interfaces: the only package that makes raw system calls."""
