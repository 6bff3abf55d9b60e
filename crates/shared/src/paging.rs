//! The paging parameters of list endpoints (API contract, "Conventions"): `limit` (1..=100,
//! default 20) and an opaque `cursor`. For lists ordered by a time-ordered id (UUID v7, newest
//! first), the cursor is the last item's id, base64url without padding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// The page size a list is asked for: 1 to 100, 20 when absent or empty (`limit=`); the error
/// is the message for the `limit` field.
pub fn limit(raw: Option<&str>) -> Result<u32, &'static str> {
    match raw.map(str::trim) {
        None | Some("") => Ok(20),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=100).contains(limit))
            .ok_or("must be between 1 and 100"),
    }
}

/// The id a page starts after, from the `cursor` parameter; `None` (the first page) when absent
/// or empty (`cursor=`); the error is the message for the `cursor` field.
pub fn after_id(raw: Option<&str>) -> Result<Option<Uuid>, &'static str> {
    raw.map(str::trim)
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| {
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| Uuid::from_slice(&bytes).ok())
                .ok_or("is not a cursor this API returned")
        })
        .transpose()
}

/// The cursor of the page that follows the item `last`.
pub fn id_cursor(last: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// A page of at most `limit` items from `items`, read with one more than `limit` so that a
/// further page shows, and the cursor of that page (`None` on the last one); `id` is an item's
/// id, as the list is ordered.
pub fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = match more {
        true => items.last().map(|last| id_cursor(id(last))),
        false => None,
    };
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_to_20_and_stay_within_1_to_100() {
        assert_eq!(limit(None).unwrap(), 20);
        assert_eq!(limit(Some(" ")).unwrap(), 20);
        assert_eq!(limit(Some("100")).unwrap(), 100);
        assert!(limit(Some("0")).is_err());
        assert!(limit(Some("101")).is_err());
        assert!(limit(Some("ten")).is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (items, next) = page(ids.clone(), 2, |id| *id);
        assert_eq!(items, ids[..2]);
        assert_eq!(next, Some(id_cursor(ids[1])));
        let (items, next) = page(ids[..2].to_vec(), 2, |id| *id);
        assert_eq!(items, ids[..2]);
        assert_eq!(next, None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let id = Uuid::now_v7();
        assert_eq!(after_id(Some(&id_cursor(id))).unwrap(), Some(id));
        assert_eq!(after_id(Some("")).unwrap(), None);
        assert_eq!(after_id(None).unwrap(), None);
        assert!(after_id(Some("not a cursor")).is_err());
        assert!(after_id(Some("AAAA")).is_err());
    }
}
