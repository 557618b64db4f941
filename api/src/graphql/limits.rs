//! Cost checks every operation passes before it runs, over HTTP and WebSocket alike:
//! string lengths (BAD_USER_INPUT), root fields, aliases and complexity (QUERY_TOO_COMPLEX).
//!
//! Complexity counts potential nodes: every field costs one, and a connection field costs
//! its page size (`first`/`last`, default 20, at most 100) times its selection, so
//! `accounts(first: 100) { nodes { refreshHistory(first: 100) { nodes { outcome } } } }`
//! costs about 100 × (100 × 2 + 2). See docs/security.md.

use std::sync::Arc;

use async_graphql::{
    ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

use crate::error::code;

/// The limits of one schema.
#[derive(Clone, Copy, Debug)]
pub struct CostLimits {
    /// Highest complexity (potential nodes) of one operation.
    pub max_complexity: usize,
    /// Most fields at the root of one operation.
    pub max_root_fields: usize,
    /// Most aliased fields in one document.
    pub max_aliases: usize,
    /// Longest string value, in bytes.
    pub max_string_bytes: usize,
}

impl ExtensionFactory for CostLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

fn refusal(code: &str, message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}

/// The longest string inside `value` (any nesting), in bytes.
fn longest_string<T>(value: &T, visit: &impl Fn(&T, &mut dyn FnMut(usize))) -> usize {
    let mut longest = 0;
    visit(value, &mut |len| longest = longest.max(len));
    longest
}

fn const_strings(value: &Value, found: &mut dyn FnMut(usize)) {
    match value {
        Value::String(s) => found(s.len()),
        Value::List(items) => items.iter().for_each(|v| const_strings(v, found)),
        Value::Object(fields) => fields.iter().for_each(|(name, v)| {
            found(name.len());
            const_strings(v, found);
        }),
        _ => {}
    }
}

fn literal_strings(value: &async_graphql_value::Value, found: &mut dyn FnMut(usize)) {
    use async_graphql_value::Value as Literal;
    match value {
        Literal::String(s) => found(s.len()),
        Literal::List(items) => items.iter().for_each(|v| literal_strings(v, found)),
        Literal::Object(fields) => fields.values().for_each(|v| literal_strings(v, found)),
        _ => {}
    }
}

/// Counts of one document: aliases, and the longest string literal in any argument.
#[derive(Default)]
struct Walk {
    aliases: usize,
    longest_literal: usize,
}

impl Walk {
    fn selection_set(&mut self, set: &SelectionSet) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    if field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    let args = field.node.arguments.iter().map(|(_, v)| &v.node);
                    let directive_args = field
                        .node
                        .directives
                        .iter()
                        .flat_map(|d| d.node.arguments.iter().map(|(_, v)| &v.node));
                    for value in args.chain(directive_args) {
                        let longest = longest_string(value, &literal_strings);
                        self.longest_literal = self.longest_literal.max(longest);
                    }
                    self.selection_set(&field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node);
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
}

/// Fields at the root of `set`, looking through fragments (at most `depth` levels, so a
/// fragment cycle, refused by validation later, cannot loop here).
fn root_fields(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> usize {
    if depth == 0 {
        return 0;
    }
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(fragment) => {
                root_fields(doc, &fragment.node.selection_set.node, depth - 1)
            }
            Selection::FragmentSpread(spread) => doc
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |f| {
                    root_fields(doc, &f.node.selection_set.node, depth - 1)
                }),
        })
        .sum()
}

impl CostLimits {
    fn check_variables(&self, variables: &Variables) -> ServerResult<()> {
        for (name, value) in variables.iter() {
            let longest = longest_string(value, &const_strings);
            if longest > self.max_string_bytes {
                return Err(refusal(
                    code::BAD_USER_INPUT,
                    format!(
                        "variable ${name} holds a string of {longest} bytes: at most {} are accepted",
                        self.max_string_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_document(&self, doc: &ExecutableDocument) -> ServerResult<()> {
        let mut walk = Walk::default();
        for (_, operation) in doc.operations.iter() {
            for variable in &operation.node.variable_definitions {
                if let Some(default) = &variable.node.default_value {
                    let longest = longest_string(&default.node, &const_strings);
                    walk.longest_literal = walk.longest_literal.max(longest);
                }
            }
            let roots = root_fields(doc, &operation.node.selection_set.node, 8);
            if roots > self.max_root_fields {
                return Err(refusal(
                    code::QUERY_TOO_COMPLEX,
                    format!(
                        "the operation has {roots} root fields: at most {} are accepted",
                        self.max_root_fields
                    ),
                ));
            }
            walk.selection_set(&operation.node.selection_set.node);
        }
        for fragment in doc.fragments.values() {
            walk.selection_set(&fragment.node.selection_set.node);
        }
        if walk.aliases > self.max_aliases {
            return Err(refusal(
                code::QUERY_TOO_COMPLEX,
                format!(
                    "the document has {} aliases: at most {} are accepted",
                    walk.aliases, self.max_aliases
                ),
            ));
        }
        if walk.longest_literal > self.max_string_bytes {
            return Err(refusal(
                code::BAD_USER_INPUT,
                format!(
                    "an argument holds a string of {} bytes: at most {} are accepted",
                    walk.longest_literal, self.max_string_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Extension for CostLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        self.check_variables(variables)?;
        let doc = next.run(ctx, query, variables).await?;
        self.check_document(&doc)?;
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.complexity > self.max_complexity {
            let mut error = refusal(
                code::QUERY_TOO_COMPLEX,
                format!(
                    "the query could return {} nodes: at most {} are accepted; ask for smaller pages",
                    result.complexity, self.max_complexity
                ),
            );
            let ext = error.extensions.get_or_insert_with(Default::default);
            ext.set("complexity", result.complexity as u64);
            ext.set("maxComplexity", self.max_complexity as u64);
            return Err(vec![error]);
        }
        Ok(result)
    }
}

/// The complexity of a connection field: its page size times its selection, plus one.
/// Saturates far below `usize::MAX`, so async-graphql's sums cannot overflow.
pub(crate) fn connection_cost(
    first: Option<i32>,
    last: Option<i32>,
    child_complexity: usize,
) -> usize {
    const CEILING: usize = 1 << 40;
    let page = first
        .or(last)
        .map_or(service::pagination::DEFAULT_PAGE_SIZE, |n| {
            u64::try_from(n).unwrap_or(0)
        })
        .min(service::pagination::MAX_PAGE_SIZE);
    let page = usize::try_from(page).unwrap_or(1).max(1);
    page.saturating_mul(child_complexity)
        .saturating_add(1)
        .min(CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CostLimits {
        CostLimits {
            max_complexity: 1000,
            max_root_fields: 3,
            max_aliases: 2,
            max_string_bytes: 8,
        }
    }

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("parses")
    }

    #[test]
    fn root_fields_count_through_fragments() {
        let doc = parse("query { a b ...F } fragment F on Query { c d }");
        assert!(limits().check_document(&doc).is_err());
        let doc = parse("query { a ...F } fragment F on Query { c }");
        assert!(limits().check_document(&doc).is_ok());
    }

    #[test]
    fn fragment_cycles_do_not_loop() {
        let doc = parse("query { ...F } fragment F on Query { ...F }");
        assert!(limits().check_document(&doc).is_ok());
    }

    #[test]
    fn aliases_and_long_literals_are_refused() {
        let doc = parse("query { a: x b: x c: x }");
        assert!(limits().check_document(&doc).is_err());
        let doc = parse(r#"query { x(s: {t: ["123456789"]}) }"#);
        assert!(limits().check_document(&doc).is_err());
        let doc = parse(r#"query { x(s: "12345678") }"#);
        assert!(limits().check_document(&doc).is_ok());
    }

    #[test]
    fn connection_cost_multiplies_and_saturates() {
        assert_eq!(connection_cost(Some(10), None, 3), 31);
        assert_eq!(connection_cost(None, None, 1), 21);
        assert_eq!(connection_cost(None, Some(1000), 1), 101);
        assert_eq!(connection_cost(Some(-5), None, 1), 2);
        assert_eq!(connection_cost(Some(100), None, usize::MAX), 1 << 40);
    }
}
