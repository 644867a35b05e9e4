//! Pure compute kernels for taskmesh tasks.
