//! Spreading users or tickets over shares deterministically, by the golden-ratio sequence: the
//! spots of 0, 1, 2… fall evenly over [0, 1) in every prefix, so that a run cut short by
//! `--requests` or `--duration`, and every seat type's users, still get close to the asked
//! shares, and a run is the same every time.

/// Where `index` falls in [0, 1): an index whose spot is below a share belongs to that share.
pub(super) fn spot(index: usize) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    ((index as f64 + 1.0) * GOLDEN).fract()
}
