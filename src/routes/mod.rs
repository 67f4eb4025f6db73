//! The portal's pages, one file per page group.
