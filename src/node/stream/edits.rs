//! How a stream's input list changes under a replace: when the new list is
//! the old one with inputs taken out, or with inputs put in, the stream
//! keeps running and its supervisor is told of each change; anything else
//! (a reorder, a changed URL, both at once) restarts the stream.

/// One change to a running stream's inputs, applied in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputEdit {
    /// Take out the input at this index (of the list as it is then).
    Remove(usize),
    /// Put the new list's input `from` in at index `at`.
    Add {
        /// Position in the list as it is then (and in the new list).
        at: usize,
        /// Index in the new list.
        from: usize,
    },
}

/// The edits turning `old` into `new`, or `None` when it is not only
/// removals or only additions. Equal lists give no edits.
pub fn input_edits<T: PartialEq>(old: &[T], new: &[T]) -> Option<Vec<InputEdit>> {
    if old.len() >= new.len() {
        // Removals: `new` must be a subsequence of `old`; remove from the
        // back so earlier indices stay valid.
        let kept = subsequence(new, old)?;
        let removed: Vec<usize> = (0..old.len()).filter(|i| !kept.contains(i)).collect();
        Some(removed.into_iter().rev().map(InputEdit::Remove).collect())
    } else {
        // Additions: `old` must be a subsequence of `new`; put in by
        // ascending final position, so each lands where `new` has it.
        let kept = subsequence(old, new)?;
        Some((0..new.len()).filter(|i| !kept.contains(i)).map(|i| InputEdit::Add { at: i, from: i }).collect())
    }
}

/// Where each item of `short` sits in `long`, in order (greedy), if all do.
fn subsequence<T: PartialEq>(short: &[T], long: &[T]) -> Option<Vec<usize>> {
    let mut at = Vec::with_capacity(short.len());
    let mut next = 0;
    for item in short {
        let found = long.get(next..)?.iter().position(|x| x == item)? + next;
        at.push(found);
        next = found + 1;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn apply(old: &[u8], new: &[u8], edits: &[InputEdit]) -> Vec<u8> {
        let mut list = old.to_vec();
        for e in edits {
            match *e {
                InputEdit::Remove(i) => {
                    list.remove(i);
                }
                InputEdit::Add { at, from } => list.insert(at, new[from]),
            }
        }
        list
    }

    #[test]
    fn removals_and_additions_are_found_and_mixtures_are_not() {
        assert_eq!(input_edits(&[1, 2, 3], &[1, 3]), Some(vec![InputEdit::Remove(1)]));
        assert_eq!(input_edits(&[1, 2, 3], &[2]), Some(vec![InputEdit::Remove(2), InputEdit::Remove(0)]));
        assert_eq!(
            input_edits(&[1, 3], &[0, 1, 2, 3]),
            Some(vec![InputEdit::Add { at: 0, from: 0 }, InputEdit::Add { at: 2, from: 2 }])
        );
        assert_eq!(input_edits(&[1, 2], &[1, 2]), Some(vec![]));
        assert_eq!(input_edits(&[1, 2], &[2, 1]), None);
        assert_eq!(input_edits(&[1, 2], &[1, 3]), None);
        assert_eq!(input_edits(&[1, 2, 3], &[3, 4]), None);
    }

    proptest! {
        #[test]
        fn edits_turn_old_into_new(old in proptest::collection::vec(0u8..6, 0..8),
                                   new in proptest::collection::vec(0u8..6, 0..8)) {
            if let Some(edits) = input_edits(&old, &new) {
                prop_assert_eq!(apply(&old, &new, &edits), new);
            }
        }
    }
}
