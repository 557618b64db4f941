//! The platform and the account status, defined with the other stored enums in
//! [`entity::enums`] and re-exported here, where most callers import them.

pub use entity::enums::{AccountStatus, Platform};
