//! Shards: which part of the seeds a run takes, by a hash of each seed id,
//! and which shard a task of a scheduler's array is (`--shard auto`), read
//! from the variables the scheduler sets (given here as a lookup, so this
//! module never reads the process environment itself).

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A shard written other than `I/N` with `I` below `N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: expected I/N with I from 0 to N-1 (e.g. 0/4), auto or auto/N")]
pub struct BadShard(pub String);

impl Shard {
    /// Whether the seed `id` belongs to this shard.
    pub fn contains(&self, id: &str) -> bool {
        crate::rng::shard_of(id, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = BadShard;
    fn from_str(s: &str) -> Result<Shard, BadShard> {
        let bad = || BadShard(s.to_string());
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl TryFrom<String> for Shard {
    type Error = BadShard;
    fn try_from(s: String) -> Result<Shard, BadShard> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

/// A scheduler whose array tasks `--shard auto` recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// A Slurm job array (`sbatch --array`).
    Slurm,
    /// A Kubernetes Indexed Job.
    Kubernetes,
    /// A SkyPilot multi-node task.
    SkyPilot,
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheduler::Slurm => "Slurm",
            Scheduler::Kubernetes => "Kubernetes",
            Scheduler::SkyPilot => "SkyPilot",
        })
    }
}

/// The variables each scheduler is recognised by, for messages.
pub const SCHEDULER_VARIABLES: &str =
    "SLURM_ARRAY_TASK_ID (Slurm), JOB_COMPLETION_INDEX (Kubernetes), SKYPILOT_NODE_RANK (SkyPilot)";

/// A shard found in a scheduler's variables, and the variables it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub shard: Shard,
    /// Every scheduler whose variables were set (they agree on `shard`).
    pub schedulers: Vec<Scheduler>,
    /// The variables read, as `NAME=value`, in the order read.
    pub variables: Vec<String>,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.schedulers.iter().map(ToString::to_string).collect();
        write!(f, "shard {} from {} ({})", self.shard, names.join(" and "), self.variables.join(", "))
    }
}

/// Why `--shard auto` found no shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoShardError {
    #[error("--shard auto found no scheduler's array variables (it reads {SCHEDULER_VARIABLES}); outside an array, write --shard I/N")]
    NotFound,
    #[error("--shard auto: {name}={value:?} is not a whole number")]
    NotANumber { name: &'static str, value: String },
    #[error("--shard auto: {0}")]
    Inconsistent(String),
    #[error("--shard auto: Kubernetes gives the index (JOB_COMPLETION_INDEX={index}) but not the count: write --shard auto/N (or EVOL_SHARD=auto/N) with N the Job's completions")]
    NoCount { index: u32 },
    #[error("--shard auto: the schedulers disagree: {0}")]
    Disagree(String),
}

/// What `--shard` says: a shard, or find it (`auto`, `auto/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Given(Shard),
    /// Read it from the scheduler; `count` when the user gave it.
    Auto {
        count: Option<u32>,
    },
}

impl std::str::FromStr for ShardSpec {
    type Err = BadShard;
    fn from_str(s: &str) -> Result<ShardSpec, BadShard> {
        let t = s.trim();
        if t == "auto" {
            return Ok(ShardSpec::Auto { count: None });
        }
        if let Some(n) = t.strip_prefix("auto/") {
            return match n.trim().parse::<u32>() {
                Ok(count) if count > 0 => Ok(ShardSpec::Auto { count: Some(count) }),
                _ => Err(BadShard(s.to_string())),
            };
        }
        s.parse().map(ShardSpec::Given)
    }
}

impl ShardSpec {
    /// The shard, finding it in `env` (a variable's value by its name) when
    /// it is `auto`. The second value says where it was found.
    pub fn resolve(self, env: impl Fn(&str) -> Option<String>) -> Result<(Shard, Option<Found>), AutoShardError> {
        match self {
            ShardSpec::Given(shard) => Ok((shard, None)),
            ShardSpec::Auto { count } => {
                let found = from_scheduler(env, count)?;
                Ok((found.shard, Some(found)))
            }
        }
    }
}

/// Reads the shard from the scheduler's variables: Slurm's array
/// (`SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_COUNT`, or the range's
/// `_MIN`, `_MAX` and `_STEP`), Kubernetes' `JOB_COMPLETION_INDEX` (the
/// count must be given) and SkyPilot's `SKYPILOT_NODE_RANK` of
/// `SKYPILOT_NUM_NODES`. With `count` given, each scheduler's index is the
/// shard's index as it stands (an array numbered 0 to N-1), so a task
/// resubmitted alone (`sbatch --array=2`) still finds its shard; without it,
/// Slurm's index is the task's place in its array's range.
pub fn from_scheduler(env: impl Fn(&str) -> Option<String>, count: Option<u32>) -> Result<Found, AutoShardError> {
    let mut read = Vec::new();
    let mut number = |name: &'static str| -> Result<Option<u32>, AutoShardError> {
        let Some(value) = env(name).filter(|v| !v.trim().is_empty()) else { return Ok(None) };
        read.push(format!("{name}={value}"));
        value.trim().parse().map(Some).map_err(|_| AutoShardError::NotANumber { name, value })
    };
    let mut found: Vec<(Scheduler, Shard)> = Vec::new();
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let shard = match count {
            Some(count) => checked(Scheduler::Slurm, id, count, "SLURM_ARRAY_TASK_ID")?,
            None => {
                let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                let max = number("SLURM_ARRAY_TASK_MAX")?;
                let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
                let tasks = number("SLURM_ARRAY_TASK_COUNT")?;
                let span = max.map(|max| max.saturating_sub(min) / step + 1);
                let total = match (tasks, span) {
                    (Some(t), Some(s)) if t != s => {
                        return Err(AutoShardError::Inconsistent(format!(
                            "the Slurm array has {t} tasks but its range {min}-{}:{step} has {s} (a list, not a range?); number the array 0 to N-1 and write --shard auto/N",
                            max.unwrap_or(min)
                        )))
                    }
                    (Some(t), _) => t,
                    (None, Some(s)) => s,
                    (None, None) => {
                        return Err(AutoShardError::Inconsistent(
                            "SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT or SLURM_ARRAY_TASK_MAX; write --shard auto/N".into(),
                        ))
                    }
                };
                if id < min || (id - min) % step != 0 {
                    return Err(AutoShardError::Inconsistent(format!(
                        "SLURM_ARRAY_TASK_ID={id} is not in the array's range {min}-{}:{step}",
                        max.unwrap_or(min)
                    )));
                }
                checked(Scheduler::Slurm, (id - min) / step, total, "SLURM_ARRAY_TASK_ID")?
            }
        };
        found.push((Scheduler::Slurm, shard));
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = count.ok_or(AutoShardError::NoCount { index })?;
        found.push((Scheduler::Kubernetes, checked(Scheduler::Kubernetes, index, count, "JOB_COMPLETION_INDEX")?));
    }
    if let Some(rank) = number("SKYPILOT_NODE_RANK")? {
        let nodes = number("SKYPILOT_NUM_NODES")?;
        let total = count.or(nodes).ok_or_else(|| {
            AutoShardError::Inconsistent(
                "SKYPILOT_NODE_RANK is set without SKYPILOT_NUM_NODES; write --shard auto/N".into(),
            )
        })?;
        found.push((Scheduler::SkyPilot, checked(Scheduler::SkyPilot, rank, total, "SKYPILOT_NODE_RANK")?));
    }
    let Some(&(_, shard)) = found.first() else { return Err(AutoShardError::NotFound) };
    if found.iter().any(|(_, s)| *s != shard) {
        let each: Vec<String> = found.iter().map(|(who, s)| format!("{who} says {s}")).collect();
        return Err(AutoShardError::Disagree(format!("{}; write --shard I/N", each.join(", "))));
    }
    Ok(Found { shard, schedulers: found.iter().map(|(who, _)| *who).collect(), variables: read })
}

/// Shard `index` of `count`, or why it is not one.
fn checked(who: Scheduler, index: u32, count: u32, name: &str) -> Result<Shard, AutoShardError> {
    if count == 0 || index >= count {
        return Err(AutoShardError::Inconsistent(format!(
            "{who}'s {name} gives shard {index} of {count}: an index must be from 0 to {}",
            count.saturating_sub(1)
        )));
    }
    Ok(Shard { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    fn auto(vars: &[(&str, &str)], count: Option<u32>) -> Result<Found, AutoShardError> {
        from_scheduler(env(vars), count)
    }

    #[test]
    fn slurm_arrays_give_their_task_place_and_count() {
        let found = auto(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "4")], None).unwrap();
        assert_eq!(found.shard, Shard { index: 2, count: 4 });
        assert_eq!(found.schedulers, [Scheduler::Slurm]);
        assert_eq!(found.to_string(), "shard 2/4 from Slurm (SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=4)");
        // A 1-based array with a step: task 7 of 1-9:2 is the fourth.
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "5"),
        ];
        assert_eq!(auto(&vars, None).unwrap().shard, Shard { index: 3, count: 5 });
        // The count from the range alone (older Slurm sets no _COUNT).
        let vars = [("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_MAX", "3")];
        assert_eq!(auto(&vars, None).unwrap().shard, Shard { index: 3, count: 4 });
        // A task resubmitted alone (`--array=2`) with the count given.
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
        ];
        assert_eq!(auto(&vars, Some(4)).unwrap().shard, Shard { index: 2, count: 4 });
        assert_eq!(auto(&vars, None).unwrap().shard, Shard { index: 0, count: 1 });
    }

    #[test]
    fn bad_slurm_variables_are_refused_by_name() {
        let err = auto(&[("SLURM_ARRAY_TASK_ID", "two"), ("SLURM_ARRAY_TASK_COUNT", "4")], None).unwrap_err();
        assert_eq!(err, AutoShardError::NotANumber { name: "SLURM_ARRAY_TASK_ID", value: "two".into() });
        assert!(err.to_string().contains("SLURM_ARRAY_TASK_ID=\"two\""), "{err}");
        // A list (`--array=0,5,9`): 3 tasks over a range of 10.
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(auto(&vars, None).unwrap_err().to_string().contains("a list, not a range"));
        let err = auto(&[("SLURM_ARRAY_TASK_ID", "4")], None).unwrap_err();
        assert!(err.to_string().contains("without SLURM_ARRAY_TASK_COUNT"), "{err}");
        let err = auto(&[("SLURM_ARRAY_TASK_ID", "4")], Some(4)).unwrap_err();
        assert!(err.to_string().contains("from 0 to 3"), "{err}");
        let err =
            auto(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_MAX", "8")], None);
        assert!(err.unwrap_err().to_string().contains("not in the array's range 5-8:1"));
    }

    #[test]
    fn kubernetes_needs_the_count_and_skypilot_gives_it() {
        let err = auto(&[("JOB_COMPLETION_INDEX", "1")], None).unwrap_err();
        assert_eq!(err, AutoShardError::NoCount { index: 1 });
        assert!(err.to_string().contains("--shard auto/N"), "{err}");
        let found = auto(&[("JOB_COMPLETION_INDEX", "1")], Some(4)).unwrap();
        assert_eq!(
            (found.shard, found.schedulers.as_slice()),
            (Shard { index: 1, count: 4 }, &[Scheduler::Kubernetes][..])
        );
        let err = auto(&[("JOB_COMPLETION_INDEX", "-1")], Some(4)).unwrap_err();
        assert!(matches!(err, AutoShardError::NotANumber { name: "JOB_COMPLETION_INDEX", .. }));
        let err = auto(&[("JOB_COMPLETION_INDEX", "4")], Some(4)).unwrap_err();
        assert!(err.to_string().contains("Kubernetes's JOB_COMPLETION_INDEX gives shard 4 of 4"), "{err}");
        let found = auto(&[("SKYPILOT_NODE_RANK", "0"), ("SKYPILOT_NUM_NODES", "2")], None).unwrap();
        assert_eq!(found.shard, Shard { index: 0, count: 2 });
        assert!(auto(&[("SKYPILOT_NODE_RANK", "0")], None).is_err());
        assert!(auto(&[("SKYPILOT_NODE_RANK", "2"), ("SKYPILOT_NUM_NODES", "2")], None).is_err());
    }

    #[test]
    fn none_found_or_two_disagreeing_are_refused() {
        assert_eq!(auto(&[], None).unwrap_err(), AutoShardError::NotFound);
        assert_eq!(auto(&[("SLURM_ARRAY_TASK_ID", " ")], Some(2)).unwrap_err(), AutoShardError::NotFound);
        let both = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SKYPILOT_NODE_RANK", "0"),
            ("SKYPILOT_NUM_NODES", "2"),
        ];
        let err = auto(&both, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--shard auto: the schedulers disagree: Slurm says 1/2, SkyPilot says 0/2; write --shard I/N"
        );
        let agree = [("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("JOB_COMPLETION_INDEX", "1")];
        let found = auto(&agree, Some(2)).unwrap();
        assert_eq!(found.schedulers, [Scheduler::Slurm, Scheduler::Kubernetes]);
    }

    #[test]
    fn shard_specs_parse() {
        assert_eq!("auto".parse::<ShardSpec>().unwrap(), ShardSpec::Auto { count: None });
        assert_eq!("auto/8".parse::<ShardSpec>().unwrap(), ShardSpec::Auto { count: Some(8) });
        assert_eq!("1/8".parse::<ShardSpec>().unwrap(), ShardSpec::Given(Shard { index: 1, count: 8 }));
        for bad in ["auto/0", "auto/x", "automatic", "auto/"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        let (shard, found) = ShardSpec::Auto { count: Some(3) }.resolve(env(&[("JOB_COMPLETION_INDEX", "2")])).unwrap();
        assert_eq!((shard, found.unwrap().schedulers), (Shard { index: 2, count: 3 }, vec![Scheduler::Kubernetes]));
    }

    #[test]
    fn shards_parse_and_round_trip() {
        let s: Shard = "1/4".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 4 });
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"1/4\"");
        for bad in ["4/4", "1", "a/b", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
