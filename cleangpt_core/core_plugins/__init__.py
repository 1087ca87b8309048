"""The core's own plugins: its components, registered through the same hooks as a third party's."""
