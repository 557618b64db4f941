use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, Select,
};

use crate::error::{ServiceError, ServiceResult};

/// Page size when the client gives neither `first` nor `last`.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 100;

/// Relay pagination arguments, already decoded: cursors are row ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageArgs {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// The sort direction of a listing, by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first (ids ascending).
    OldestFirst,
    /// Newest first (ids descending).
    NewestFirst,
}

/// One page of rows plus whether more exist on either side.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous: bool,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// Maps the items with a fallible conversion, keeping the page flags.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, E>>()?,
            has_previous: self.has_previous,
            has_next: self.has_next,
        })
    }

    /// Maps the items, keeping the page flags.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_previous: self.has_previous,
            has_next: self.has_next,
        }
    }
}

/// Keyset pagination by id: constant cost per page, stable under inserts.
pub(crate) async fn paginate<E, C>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    id: C,
    direction: Direction,
    args: PageArgs,
) -> ServiceResult<Page<E::Model>>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    for size in [args.first, args.last].into_iter().flatten() {
        if size > MAX_PAGE_SIZE {
            return Err(ServiceError::bad_input(format!(
                "page size {size} is too large: at most {MAX_PAGE_SIZE}"
            )));
        }
    }
    let forward = direction == Direction::OldestFirst;
    // "after" means further along the listing order.
    let mut select = select;
    if let Some(after) = args.after {
        select = select.filter(if forward { id.gt(after) } else { id.lt(after) });
    }
    if let Some(before) = args.before {
        select = select.filter(if forward {
            id.lt(before)
        } else {
            id.gt(before)
        });
    }
    let backwards = args.last.is_some() && args.first.is_none();
    let size = if backwards { args.last } else { args.first }.unwrap_or(DEFAULT_PAGE_SIZE);
    let order = if forward != backwards {
        Order::Asc
    } else {
        Order::Desc
    };
    let mut items = select.order_by(id, order).limit(size + 1).all(db).await?;
    let more = items.len() as u64 > size;
    items.truncate(size as usize);
    if backwards {
        items.reverse();
        Ok(Page {
            items,
            has_previous: more,
            has_next: args.before.is_some(),
        })
    } else {
        Ok(Page {
            items,
            has_previous: args.after.is_some(),
            has_next: more,
        })
    }
}
