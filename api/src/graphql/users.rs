use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::user;
use service::identity::users;

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        admin::Role,
        context::ContextExt,
        ids,
        paging::{self, IdConnection},
    },
};

/// The global-id type name of dashboard users.
pub(crate) const KIND: &str = "User";

/// A dashboard user (created with `tokenwarden user create`). Every user signs in with a
/// password and a TOTP or recovery code.
#[derive(SimpleObject)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: Role,
    /// Always true: every user has a TOTP secret and sign-in always asks for a code.
    pub totp_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    /// Disabled users cannot sign in; their sessions ended when they were disabled.
    pub disabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub row_id: i64,
}

impl TryFrom<user::Model> for User {
    type Error = ApiError;

    fn try_from(model: user::Model) -> ApiResult<Self> {
        let role = model.role;
        Ok(Self {
            id: ids::encode(KIND, model.id),
            email: model.email,
            role: role.into(),
            totp_enabled: !model.totp_secret_enc.is_empty(),
            created_at: model.created_at,
            last_sign_in_at: model.last_sign_in_at,
            disabled: model.disabled_at.is_some(),
            disabled_at: model.disabled_at,
            row_id: model.id,
        })
    }
}

/// Extra fields of the user connection.
pub struct UserTotals;

#[Object]
impl UserTotals {
    /// How many users the tenant has, disabled ones included.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        Ok(users::count(ctx.db()?, ctx.caller()?).await?)
    }
}

/// Dashboard user queries (ADMIN).
#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The tenant's dashboard users, oldest first (ADMIN).
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<IdConnection<User, UserTotals>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        paging::relay(
            after,
            before,
            first,
            last,
            UserTotals,
            |u: &User| u.row_id,
            |page| async move {
                let page = users::list(db, caller, page).await?;
                page.try_map(User::try_from)
            },
        )
        .await
    }
}
