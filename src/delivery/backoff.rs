//! How long to wait before asking again: a failed send's next attempt, an overdue
//! confirmation's next question. Shared by the worker and the inbox, below both.

use std::time::Duration;

/// Capped exponential backoff with "equal jitter": half the step fixed, half random, so
/// retries spread out yet each waits at least as long as the previous one's minimum.
pub fn backoff(attempt: u32, base_seconds: u32, cap_seconds: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let step = u64::from(base_seconds)
        .saturating_mul(1 << exponent)
        .min(u64::from(cap_seconds))
        .max(1);
    let half = step / 2;
    let mut random = [0u8; 8];
    let jitter = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) % (step - half + 1),
        Err(_) => step - half,
    };
    Duration::from_secs(half + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut previous_min = 0;
        for attempt in 1..=10 {
            let step = (30u64 << (attempt - 1)).min(3600);
            let delay = backoff(attempt, 30, 3600).as_secs();
            assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay}");
            assert!(step / 2 >= previous_min);
            previous_min = step / 2;
        }
        assert!(backoff(40, 30, 3600).as_secs() <= 3600);
    }
}
