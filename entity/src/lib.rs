//! sea-orm entities: one module per table, and [`enums`], the closed sets of values their
//! columns store. Domain rules live in `service`.

pub mod api_key;
pub mod audit_log;
pub mod enums;
pub mod notification;
pub mod oauth_state;
pub mod oauth_token;
pub mod provider_call;
pub mod refresh_attempt;
pub mod setting;
pub mod sign_in_throttle;
pub mod social_account;
pub mod tenant;
pub mod token_event;
pub mod token_read;
pub mod user;
pub mod user_recovery_code;
pub mod user_session;
pub mod webhook;
pub mod webhook_delivery;

pub mod prelude {
    //! The entities under their table-ish names, for `use entity::prelude::*`.
    pub use super::api_key::Entity as ApiKey;
    pub use super::audit_log::Entity as AuditLog;
    pub use super::notification::Entity as Notification;
    pub use super::oauth_state::Entity as OauthState;
    pub use super::oauth_token::Entity as OauthToken;
    pub use super::provider_call::Entity as ProviderCall;
    pub use super::refresh_attempt::Entity as RefreshAttempt;
    pub use super::setting::Entity as Setting;
    pub use super::sign_in_throttle::Entity as SignInThrottle;
    pub use super::social_account::Entity as SocialAccount;
    pub use super::tenant::Entity as Tenant;
    pub use super::token_event::Entity as TokenEvent;
    pub use super::token_read::Entity as TokenRead;
    pub use super::user::Entity as User;
    pub use super::user_recovery_code::Entity as UserRecoveryCode;
    pub use super::user_session::Entity as UserSession;
    pub use super::webhook::Entity as Webhook;
    pub use super::webhook_delivery::Entity as WebhookDelivery;
}
