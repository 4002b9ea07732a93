//! The side-by-side benchmark (filled in below).
