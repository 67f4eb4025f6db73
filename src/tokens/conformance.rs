//! The conformance kit: one suite that every `TokenStore` must pass (issue 2; not written yet).
