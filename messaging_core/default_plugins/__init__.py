"""Built-in behaviour shipped as plugins, registered through the same hooks as third-party ones."""
