"""Model lifecycle: bundles (atomic publish), training and publishing."""
