//! The one table by which a channel's receipt moves a delivery: pure, so every pair is tested
//! below, and the inbox's apply step is the only caller.
//!
//! - `sending | accepted → delivered | failed | expired` (and `accepted` itself from `sending`);
//! - `delivered → displayed → played`, skipping forward allowed (a `played` report may overtake
//!   the `delivered` one), never backwards;
//! - a receipt about a delivery the worker has not recorded yet (still `sending`) wins: the
//!   worker's late record finds the row no longer `sending` and leaves it alone.

use herald_channels::ReceiptStatus;

use super::{DeliveryKind, DeliveryState};

/// How far along a publish delivery is, for states a receipt may move on from; `None` for
/// states no receipt moves (not sent, or ended by the hub or an operator).
fn progress(state: DeliveryState) -> Option<u8> {
    use DeliveryState as S;
    match state {
        // `retrying` and `unconfirmed`: an earlier attempt may have landed after all; the
        // channel saying so settles it (and saves a duplicate send).
        S::Sending | S::Retrying | S::Unconfirmed => Some(0),
        S::Accepted => Some(1),
        S::Delivered => Some(2),
        S::Displayed => Some(3),
        S::Played => Some(4),
        S::Pending | S::Failed | S::Expired | S::Withdrawn | S::Cancelled => None,
    }
}

/// Where a receipt of `status` takes a delivery of `kind` now in `from`; `None`: it stays.
pub fn transition(from: DeliveryState, kind: DeliveryKind, status: &ReceiptStatus) -> Option<DeliveryState> {
    use DeliveryState as S;
    let at = progress(from)?;
    let to = match (kind, status) {
        (DeliveryKind::Publish, ReceiptStatus::Accepted) => S::Accepted,
        (DeliveryKind::Publish, ReceiptStatus::Delivered) => S::Delivered,
        (DeliveryKind::Publish, ReceiptStatus::Displayed) => S::Displayed,
        (DeliveryKind::Publish, ReceiptStatus::Played) => S::Played,
        // A takedown of a published item is the withdrawal delivery's business, not this one's.
        (DeliveryKind::Publish, ReceiptStatus::Withdrawn) => return None,
        (DeliveryKind::Withdraw, ReceiptStatus::Accepted) => S::Accepted,
        (DeliveryKind::Withdraw, ReceiptStatus::Withdrawn | ReceiptStatus::Delivered) => S::Withdrawn,
        (DeliveryKind::Withdraw, ReceiptStatus::Displayed | ReceiptStatus::Played) => return None,
        // Failure ends only a delivery not known to have arrived: a late failure report never
        // undoes `delivered`. It is not retried on its own either: the channel had taken it,
        // and sending again could publish twice; an operator's retry resumes from the checkpoint.
        // `retrying` is left alone: a failure of an earlier attempt says nothing of the next.
        (_, ReceiptStatus::Failed { .. }) => {
            return matches!(from, S::Sending | S::Accepted | S::Unconfirmed).then_some(S::Failed);
        }
        // Likewise an expiry: it ends only what is not known to have been carried out.
        (_, ReceiptStatus::Expired) => {
            return matches!(from, S::Sending | S::Accepted | S::Unconfirmed).then_some(S::Expired);
        }
    };
    if to == S::Withdrawn {
        return (at <= 1).then_some(to);
    }
    match progress(to) {
        Some(next) if next > at => Some(to),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use herald_channels::Permanence;

    use super::*;

    fn statuses() -> Vec<ReceiptStatus> {
        vec![
            ReceiptStatus::Accepted,
            ReceiptStatus::Delivered,
            ReceiptStatus::Displayed,
            ReceiptStatus::Played,
            ReceiptStatus::Withdrawn,
            ReceiptStatus::Expired,
            ReceiptStatus::Failed {
                permanence: Permanence::Permanent,
                code: "rejected".into(),
                message: "内容审核未通过".into(),
            },
            ReceiptStatus::Failed {
                permanence: Permanence::Transient,
                code: "busy".into(),
                message: "稍后再试".into(),
            },
        ]
    }

    /// The whole table, written out: (from, kind, status) → to, for every move there is.
    fn expected(from: DeliveryState, kind: DeliveryKind, status: &ReceiptStatus) -> Option<DeliveryState> {
        use DeliveryKind as K;
        use DeliveryState as S;
        use ReceiptStatus as R;
        match (kind, from, status) {
            (K::Publish, S::Sending | S::Retrying | S::Unconfirmed, R::Accepted) => Some(S::Accepted),
            (K::Publish, S::Sending | S::Retrying | S::Unconfirmed | S::Accepted, R::Delivered) => {
                Some(S::Delivered)
            }
            (
                K::Publish,
                S::Sending | S::Retrying | S::Unconfirmed | S::Accepted | S::Delivered,
                R::Displayed,
            ) => Some(S::Displayed),
            (
                K::Publish,
                S::Sending | S::Retrying | S::Unconfirmed | S::Accepted | S::Delivered | S::Displayed,
                R::Played,
            ) => Some(S::Played),
            (K::Withdraw, S::Sending | S::Retrying | S::Unconfirmed, R::Accepted) => Some(S::Accepted),
            (
                K::Withdraw,
                S::Sending | S::Retrying | S::Unconfirmed | S::Accepted,
                R::Withdrawn | R::Delivered,
            ) => Some(S::Withdrawn),
            (_, S::Sending | S::Accepted | S::Unconfirmed, R::Failed { .. }) => Some(S::Failed),
            (_, S::Sending | S::Accepted | S::Unconfirmed, R::Expired) => Some(S::Expired),
            _ => None,
        }
    }

    #[test]
    fn every_state_kind_and_status_moves_as_the_table_says() {
        let mut moves = 0;
        for &from in DeliveryState::ALL {
            for &kind in DeliveryKind::ALL {
                for status in statuses() {
                    let got = transition(from, kind, &status);
                    assert_eq!(
                        got,
                        expected(from, kind, &status),
                        "{} {} + {}",
                        kind.as_str(),
                        from.as_str(),
                        status.as_str()
                    );
                    moves += usize::from(got.is_some());
                }
            }
        }
        assert_eq!(
            moves, 47,
            "the number of allowed moves changed: update the table above"
        );
    }

    /// Rank along the publish path; a move never goes down it.
    fn rank(state: DeliveryState) -> u8 {
        match state {
            DeliveryState::Accepted => 1,
            DeliveryState::Delivered => 2,
            DeliveryState::Displayed => 3,
            DeliveryState::Played => 4,
            _ => 0,
        }
    }

    #[test]
    fn never_backwards_and_never_out_of_an_end() {
        for &from in DeliveryState::ALL {
            for &kind in DeliveryKind::ALL {
                for status in statuses() {
                    let Some(to) = transition(from, kind, &status) else {
                        continue;
                    };
                    assert_ne!(to, from, "a move changes the state");
                    // The ends (failed, expired, withdrawn) are reached from along the path.
                    if !matches!(
                        to,
                        DeliveryState::Failed | DeliveryState::Expired | DeliveryState::Withdrawn
                    ) {
                        assert!(rank(to) > rank(from), "{} → {}", from.as_str(), to.as_str());
                    }
                    assert!(
                        !matches!(
                            from,
                            DeliveryState::Pending
                                | DeliveryState::Failed
                                | DeliveryState::Expired
                                | DeliveryState::Withdrawn
                                | DeliveryState::Cancelled
                        ),
                        "{} is not moved by receipts",
                        from.as_str()
                    );
                }
            }
        }
    }

    #[test]
    fn reordered_and_repeated_receipts_end_in_the_same_state() {
        use ReceiptStatus as R;
        let fold = |order: &[R]| {
            order.iter().fold(DeliveryState::Accepted, |state, status| {
                transition(state, DeliveryKind::Publish, status).unwrap_or(state)
            })
        };
        let forward = fold(&[R::Delivered, R::Displayed, R::Played]);
        let backward = fold(&[R::Played, R::Displayed, R::Delivered]);
        let repeated = fold(&[R::Delivered, R::Played, R::Delivered, R::Played, R::Accepted]);
        assert_eq!(forward, DeliveryState::Played);
        assert_eq!(backward, DeliveryState::Played);
        assert_eq!(repeated, DeliveryState::Played);
        let failure = R::Failed {
            permanence: Permanence::Permanent,
            code: "x".into(),
            message: "y".into(),
        };
        assert_eq!(fold(&[R::Delivered, failure.clone()]), DeliveryState::Delivered);
        assert_eq!(
            transition(DeliveryState::Sending, DeliveryKind::Publish, &R::Delivered),
            Some(DeliveryState::Delivered),
            "a receipt that overtakes the worker's record wins"
        );
    }
}
