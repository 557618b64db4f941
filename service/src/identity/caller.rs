use crate::error::{ServiceError, ServiceResult};

pub use entity::enums::Role;

/// Who did something, as written to the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `None` only for deployment-wide actions.
    pub tenant_id: Option<i64>,
    /// `api_key:<id>`, `user:<email>`, `cli`, `bootstrap` or `system`.
    pub name: String,
    /// The client address of the HTTP request, if any.
    pub client_ip: Option<String>,
}

impl Actor {
    /// An actor for work the service does by itself (jobs, startup).
    pub fn system(tenant_id: Option<i64>, name: &str) -> Self {
        Self {
            tenant_id,
            name: name.to_owned(),
            client_ip: None,
        }
    }
}

/// Who authenticated a request: an API key, or a dashboard user's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A bearer API key.
    ApiKey { id: i64 },
    /// A signed-in dashboard user (session cookie).
    User {
        id: i64,
        email: String,
        session_id: i64,
    },
}

/// An authenticated API caller. Every tenant-owned query filters by `tenant_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: i64,
    pub role: Role,
    pub principal: Principal,
    pub client_ip: Option<String>,
}

impl Caller {
    /// Fails with `Forbidden` unless the caller's role includes `required`.
    pub fn require(&self, required: Role) -> ServiceResult<()> {
        if self.role.includes(required) {
            Ok(())
        } else {
            let whose = match self.principal {
                Principal::ApiKey { .. } => "your key",
                Principal::User { .. } => "your user",
            };
            Err(ServiceError::Forbidden(format!(
                "this operation requires the {required} role; {whose} has {}",
                self.role
            )))
        }
    }

    /// The API key of this caller, when it authenticated with one.
    pub fn api_key_id(&self) -> Option<i64> {
        match self.principal {
            Principal::ApiKey { id } => Some(id),
            Principal::User { .. } => None,
        }
    }

    /// The dashboard user of this caller, when it signed in.
    pub fn user_id(&self) -> Option<i64> {
        match self.principal {
            Principal::User { id, .. } => Some(id),
            Principal::ApiKey { .. } => None,
        }
    }

    /// The audit-log actor label: `api_key:<id>` or `user:<email>`.
    pub(crate) fn actor_name(&self) -> String {
        match &self.principal {
            Principal::ApiKey { id } => format!("api_key:{id}"),
            Principal::User { email, .. } => format!("user:{email}"),
        }
    }

    /// The audit-log actor for this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            tenant_id: Some(self.tenant_id),
            name: self.actor_name(),
            client_ip: self.client_ip.clone(),
        }
    }

    /// The audit-log actor of a deployment-wide operation (OPERATOR): the entry belongs
    /// to no tenant, so every operator sees it and no tenant's ADMIN does.
    pub(crate) fn deployment_actor(&self) -> Actor {
        Actor {
            tenant_id: None,
            ..self.actor()
        }
    }

    /// Whether this caller may see deployment-wide data (OPERATOR).
    pub fn is_operator(&self) -> bool {
        self.role.includes(Role::Operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("viewer".parse::<Role>().ok(), Some(Role::Viewer));
        assert_eq!("OPERATOR".parse::<Role>().ok(), Some(Role::Operator));
        assert!(matches!(
            "root".parse::<Role>().map_err(ServiceError::from),
            Err(ServiceError::BadInput(_))
        ));
    }

    #[test]
    fn viewer_is_forbidden_admin_work() {
        let caller = Caller {
            tenant_id: 1,
            role: Role::Viewer,
            principal: Principal::ApiKey { id: 7 },
            client_ip: None,
        };
        assert!(matches!(
            caller.require(Role::Admin),
            Err(ServiceError::Forbidden(_))
        ));
        assert_eq!(caller.actor().name, "api_key:7");
    }

    #[test]
    fn admins_are_forbidden_operator_work_and_operators_act_deployment_wide() {
        let mut caller = Caller {
            tenant_id: 1,
            role: Role::Admin,
            principal: Principal::ApiKey { id: 7 },
            client_ip: Some("10.0.0.1".into()),
        };
        assert!(matches!(
            caller.require(Role::Operator),
            Err(ServiceError::Forbidden(_))
        ));
        assert!(!caller.is_operator());
        caller.role = Role::Operator;
        assert!(caller.require(Role::Operator).is_ok());
        assert!(caller.require(Role::Admin).is_ok());
        let actor = caller.deployment_actor();
        assert_eq!(actor.tenant_id, None);
        assert_eq!(actor.name, "api_key:7");
        assert_eq!(actor.client_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn a_user_acts_under_their_email() {
        let caller = Caller {
            tenant_id: 1,
            role: Role::Admin,
            principal: Principal::User {
                id: 3,
                email: "ops@example.test".into(),
                session_id: 9,
            },
            client_ip: None,
        };
        assert_eq!(caller.actor().name, "user:ops@example.test");
        assert_eq!(caller.api_key_id(), None);
        assert_eq!(caller.user_id(), Some(3));
    }
}
