//! Deployment artifact checks live in `tests/`.
