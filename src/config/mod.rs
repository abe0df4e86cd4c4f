//! Config: see the helper task.
