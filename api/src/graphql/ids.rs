use async_graphql::{ID, connection::CursorType};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{ApiError, ApiResult};

/// Encodes a global id: base64url of `<Type>:<row id>`.
pub fn encode(kind: &str, id: i64) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{kind}:{id}")))
}

/// Decodes any global id into its type name and row id.
pub(crate) fn decode_any(id: &ID) -> ApiResult<(String, i64)> {
    let invalid = || ApiError::bad_input(format!("{:?} is not a valid id", id.as_str()));
    let bytes = URL_SAFE_NO_PAD
        .decode(id.as_bytes())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (kind, raw) = text.split_once(':').ok_or_else(invalid)?;
    let row = raw.parse::<i64>().map_err(|_| invalid())?;
    Ok((kind.to_owned(), row))
}

/// Decodes a global id that must be of type `kind`.
pub fn decode(id: &ID, kind: &str) -> ApiResult<i64> {
    let (found, row) = decode_any(id)?;
    if found == kind {
        Ok(row)
    } else {
        Err(ApiError::bad_input(format!(
            "{:?} is a {found} id, expected a {kind} id",
            id.as_str()
        )))
    }
}

/// An opaque pagination cursor over row ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdCursor(pub i64);

impl CursorType for IdCursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        let invalid = || format!("{s:?} is not a valid cursor");
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        text.strip_prefix("cursor:")
            .and_then(|id| id.parse().ok())
            .map(IdCursor)
            .ok_or_else(invalid)
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("cursor:{}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_check_type() {
        let id = encode("SocialAccount", 42);
        assert_eq!(decode(&id, "SocialAccount"), Ok(42));
        assert!(decode(&id, "ApiKey").is_err());
        assert!(decode(&ID("not base64!".into()), "ApiKey").is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = IdCursor(7).encode_cursor();
        assert_eq!(IdCursor::decode_cursor(&cursor), Ok(IdCursor(7)));
        assert!(IdCursor::decode_cursor("garbage").is_err());
    }

    mod fuzz {
        //! Property tests ("fuzzing" with proptest): any text given as an id or a cursor is
        //! answered with a value or BAD_USER_INPUT, never a panic; encodings round-trip.
        //! `PROPTEST_CASES` sets the number of cases (see docs/testing.md).

        use async_graphql::{ID, connection::CursorType};
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        use proptest::prelude::*;

        use super::super::*;

        /// Text, or base64url of text that looks like a global id or a cursor.
        fn candidate() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,64}",
                "[A-Za-z0-9_-]{0,64}",
                "([A-Za-z]{0,16}|cursor):-?[0-9]{0,24}".prop_map(|t| URL_SAFE_NO_PAD.encode(t)),
                prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
            ]
        }

        proptest! {
            #[test]
            fn global_ids_decode_without_panic(text in candidate()) {
                let id = ID(text);
                match decode_any(&id) {
                    Ok((kind, row)) => prop_assert_eq!(decode(&id, &kind), Ok(row)),
                    Err(err) => prop_assert_eq!(err.code, "BAD_USER_INPUT"),
                }
                if let Err(err) = decode(&id, "SocialAccount") {
                    prop_assert_eq!(err.code, "BAD_USER_INPUT");
                }
            }

            #[test]
            fn global_ids_round_trip(kind in "[A-Za-z]{1,24}", row in any::<i64>()) {
                prop_assert_eq!(decode(&encode(&kind, row), &kind), Ok(row));
            }

            #[test]
            fn cursors_decode_without_panic_and_round_trip(text in candidate(), row in any::<i64>()) {
                let _ = IdCursor::decode_cursor(&text);
                let cursor = IdCursor(row).encode_cursor();
                prop_assert_eq!(IdCursor::decode_cursor(&cursor), Ok(IdCursor(row)));
            }
        }
    }
}
