namespace Hybrid

/// Placeholder.
module Placeholder =
    let x = 1
