"""工作台: the staff console at /console (docs/console.md)."""
