//! `evol ops list` and `evol ops show NAME`: the operator sets, to read,
//! copy and edit.

use anyhow::{bail, Context};
use evol_core::ops::{OperatorSet, BUILTIN_SETS};
use evol_core::{OperationSet, Templates};

use crate::cli::OpsCommand;

pub fn ops(command: OpsCommand) -> anyhow::Result<()> {
    match command {
        OpsCommand::List => list(),
        OpsCommand::Show { name } => crate::stdout(&show(&name)?),
    }
}

fn list() -> anyhow::Result<()> {
    let mut out = String::new();
    for name in OperatorSet::builtin_names() {
        let set = OperatorSet::builtin(name).expect("built in");
        out.push_str(&format!("{name}: {}\n", set.description));
        let total: f64 = set.operations.iter().map(|op| op.weight).sum();
        for op in set.operations.iter() {
            let rules: Vec<&str> = op.rules.iter().map(|r| r.name()).collect();
            out.push_str(&format!(
                "  {:<18} {:<10} weight {:<5} ({:>4.1}%)  rules {}\n",
                op.name,
                op.kind.name(),
                op.weight,
                100.0 * op.weight / total,
                rules.join(",")
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "Select with `evol run --ops SET` or `--ops SET:LIST` (names, kinds, `all`, each `=WEIGHT` optional);\n\
         `evol ops show SET` prints a set as a file to edit and pass to `evol run --ops-file FILE`.\n",
    );
    crate::stdout(&out)
}

/// The text `evol ops show NAME` prints.
fn show(name: &str) -> anyhow::Result<String> {
    let (set_name, operator) = match name.split_once(':') {
        Some((set, op)) => (set, Some(op)),
        None => (name, None),
    };
    let (set, shipped) = match BUILTIN_SETS.iter().find(|(n, _)| *n == set_name) {
        Some((_, text)) => (OperatorSet::builtin(set_name).expect("built in"), Some(*text)),
        None if std::path::Path::new(set_name).is_file() => {
            (crate::settings::read_operator_file(std::path::Path::new(set_name))?, None)
        }
        None => bail!(
            "no operator set `{set_name}` (built in: {}; or the path of a set file)",
            OperatorSet::builtin_names().join(", ")
        ),
    };
    let set = match operator {
        None => set,
        Some(op) => {
            let chosen = set.operations.get(op).cloned().with_context(|| {
                format!("the set `{}` has no operator `{op}` (it has: {})", set.name, set.operations.names().join(", "))
            })?;
            let used: Vec<&str> =
                [Some(chosen.template.as_str()), chosen.method.as_deref()].into_iter().flatten().collect();
            let templates = set.templates.iter().filter(|(k, _)| used.contains(&k.as_str()));
            OperatorSet {
                templates: templates.map(|(k, v)| (k.clone(), v.clone())).collect(),
                operations: one(&set.operations, op),
                ..set.clone()
            }
        }
    };
    let extra = Templates::builtin_used_by(&set);
    if let (Some(text), None, true) = (shipped, operator, extra.is_empty()) {
        return Ok(text.to_string());
    }
    let mut out = String::new();
    if let Some(text) = shipped {
        for line in text.lines().take_while(|l| l.starts_with('#')) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "# Printed by `evol ops show {name}`, the built-in templates it names written in: edit it and pass it to\n\
         # `evol run --ops-file FILE`.\n\n"
    ));
    out.push_str(&set.to_toml(&extra));
    Ok(out)
}

fn one(ops: &OperationSet, name: &str) -> OperationSet {
    ops.select(name).expect("the operator exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every set as `show` prints it reads back as the same set, and the
    /// `evol` set printed stand-alone gives runs the built-in digest.
    #[test]
    fn shown_sets_read_back() {
        for name in OperatorSet::builtin_names() {
            let text = show(name).unwrap();
            let set = OperatorSet::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(set.operations, OperatorSet::builtin(name).unwrap().operations, "{name}");
            let t = Templates::new(std::collections::BTreeMap::new(), &set, &set.operations).unwrap();
            if name == "evol" {
                assert_eq!(t.digest(), Templates::builtin().digest());
                assert!(text.contains("[templates]") && text.contains("\"in_depth.txt\" = '''"));
            }
        }
        let one = OperatorSet::parse(&show("code:misleading_code").unwrap()).unwrap();
        assert_eq!(one.operations.names(), ["misleading_code"]);
        assert_eq!(one.templates.len(), 2, "its scaffold and its method");
        assert!(show("code:nope").unwrap_err().to_string().contains("misleading_code"));
        assert!(show("poetry").unwrap_err().to_string().contains("built in: evol, code, math, auto"));
    }
}
