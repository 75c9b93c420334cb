//! Sigma field names to the ECS fields vigil stores, per `logsource`
//! category. The table is YAML a user can read and extend without Rust:
//! `sigma-taxonomy.yml` in a rules directory adds to (and overrides) the
//! shipped one below, category by category; `any` applies to every
//! category.

use std::collections::BTreeMap;

use super::yaml::{self, Node};

/// The shipped table (also printed in the README).
pub const SHIPPED: &str = r#"# Sigma field -> vigil (ECS) field, per logsource category.
# `any` applies to every category; a category's own entries win.
any:
  Image: process.executable
  CommandLine: process.command_line
  ParentImage: process.parent.executable
  ParentCommandLine: process.parent.command_line
  User: user.name
  ProcessId: process.pid
  ParentProcessId: process.parent.pid
  CurrentDirectory: process.working_directory
process_creation:
  OriginalFileName: process.name
file_event:
  TargetFilename: file.path
file_rename:
  TargetFilename: file.path
  SourceFilename: file.target_path
file_delete:
  TargetFilename: file.path
network_connection:
  DestinationIp: destination.ip
  DestinationPort: destination.port
  DestinationHostname: destination.domain
  SourceIp: source.ip
  SourcePort: source.port
  Protocol: network.transport
"#;

/// The file name a rules directory may hold to extend the table.
pub const FILE_NAME: &str = "sigma-taxonomy.yml";

#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    /// category → (Sigma field → ECS field); category `any` for all.
    map: BTreeMap<String, BTreeMap<String, String>>,
}

impl Taxonomy {
    /// The shipped table.
    pub fn shipped() -> Taxonomy {
        let mut t = Taxonomy::default();
        t.extend_from(SHIPPED)
            .expect("the shipped taxonomy is valid YAML");
        t
    }

    /// Adds a table's entries (a map of categories, each a map of Sigma
    /// field to ECS field); errors name the line.
    pub fn extend_from(&mut self, text: &str) -> Result<(), (yaml::Mark, String)> {
        let doc = yaml::parse(text).map_err(|e| (e.at, e.message))?;
        let Node::Map(categories, _) = &doc else {
            return Err((doc.at(), "expected a map of logsource categories".into()));
        };
        for (cat, fields) in categories {
            let cat_name = cat
                .text()
                .ok_or((cat.at(), "a category name must be text".to_string()))?;
            let Node::Map(entries, _) = fields else {
                return Err((
                    fields.at(),
                    format!("`{cat_name}` must map Sigma fields to ECS fields"),
                ));
            };
            let table = self.map.entry(cat_name.to_string()).or_default();
            for (k, v) in entries {
                let (Some(k), Some(v)) = (k.text(), v.text()) else {
                    return Err((v.at(), "expected `SigmaField: ecs.field`".into()));
                };
                table.insert(k.to_string(), v.to_string());
            }
        }
        Ok(())
    }

    /// The ECS field for `sigma_field` in `category`.
    pub fn field(&self, category: Option<&str>, sigma_field: &str) -> Option<&str> {
        category
            .and_then(|c| self.map.get(c))
            .and_then(|t| t.get(sigma_field))
            .or_else(|| self.map.get("any").and_then(|t| t.get(sigma_field)))
            .map(String::as_str)
    }
}
