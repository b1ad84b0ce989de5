//! Promotion/demotion policies: pure decisions over heat and tier state.
