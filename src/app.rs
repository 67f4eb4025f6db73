//! Building and running the portal: the zero2prod shape, so tests start the real app on port 0.
