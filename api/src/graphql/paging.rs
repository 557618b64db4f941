use std::future::Future;

use async_graphql::{
    ObjectType, OutputType,
    connection::{self, Connection, Edge},
};
use service::pagination::{Page, PageArgs};

use crate::{error::ApiResult, graphql::ids::IdCursor};

/// A Relay connection whose cursors are row ids.
pub type IdConnection<N, F> = Connection<IdCursor, N, F>;

/// Validates the Relay arguments, runs `fetch` with the decoded page arguments and builds
/// the connection. `cursor_of` gives each node's row id.
pub async fn relay<N, F, Fut>(
    after: Option<String>,
    before: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
    fields: F,
    cursor_of: impl Fn(&N) -> i64,
    fetch: impl FnOnce(PageArgs) -> Fut,
) -> async_graphql::Result<IdConnection<N, F>>
where
    N: OutputType,
    F: ObjectType,
    Fut: Future<Output = ApiResult<Page<N>>>,
{
    connection::query(
        after,
        before,
        first,
        last,
        |after: Option<IdCursor>, before: Option<IdCursor>, first, last| async move {
            let args = PageArgs {
                after: after.map(|c| c.0),
                before: before.map(|c| c.0),
                first: first.map(|n| n as u64),
                last: last.map(|n| n as u64),
            };
            let page = fetch(args).await?;
            let mut connection =
                Connection::with_additional_fields(page.has_previous, page.has_next, fields);
            connection.edges.extend(
                page.items
                    .into_iter()
                    .map(|node| Edge::new(IdCursor(cursor_of(&node)), node)),
            );
            Ok::<_, async_graphql::Error>(connection)
        },
    )
    .await
}
