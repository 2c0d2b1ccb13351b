//! What Redis itself spent on a benchmark: `INFO cpu` and `INFO commandstats` read on every
//! primary before and after the measured phase, summed over the primaries (one Redis is a list
//! of one), and reported as CPU seconds, µs per unit of work (a game, a record) and the
//! commands that took the most of Redis's time meanwhile.
//!
//! The CPU figure is the whole `redis-server` process (`used_cpu_user + used_cpu_sys`): its
//! main thread, I/O threads and background work alike. Command times are `usec` of
//! commandstats, which counts a command inside a script both on its own line and within the
//! script's `evalsha`: they rank commands, they do not add up to the CPU figure.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::pipeline::redis_conn::Redis;

/// How many commands the report lists.
const TOP_COMMANDS: usize = 5;

/// One reading of the counters, summed over the primaries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisSample {
    /// Seconds of CPU (user + system) since each server started.
    pub cpu_seconds: f64,
    /// Per command (`get`, `client|list`): calls and µs since each server started.
    pub commands: BTreeMap<String, CommandTotals>,
    /// How many primaries were read.
    pub primaries: usize,
}

/// A command's counters from `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandTotals {
    pub calls: u64,
    pub usec: u64,
}

/// What Redis spent between two samples.
#[derive(Clone, Debug, Serialize)]
pub struct RedisCost {
    /// Primaries summed over.
    pub primaries: usize,
    /// CPU seconds (user + system) of every primary together.
    pub cpu_seconds: f64,
    /// What one unit of work is (`game`, `record`).
    pub unit: &'static str,
    /// Units of work done in the measured phase.
    pub units: u64,
    /// `cpu_seconds` in µs per unit; 0 when no unit was done.
    pub cpu_us_per_unit: f64,
    /// The commands with the most µs of Redis time, most first.
    pub top_commands: Vec<CommandCost>,
}

/// One command's share of the measured phase.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CommandCost {
    pub command: String,
    pub calls: u64,
    pub usec: u64,
}

impl RedisSample {
    /// Reads `INFO cpu` and `INFO commandstats` of every primary of `redis`.
    pub async fn take(redis: &Redis) -> Result<RedisSample> {
        let mut total = RedisSample::default();
        for mut node in redis.primaries().await? {
            let (cpu, commands): (String, String) = redis::pipe()
                .cmd("INFO")
                .arg("cpu")
                .cmd("INFO")
                .arg("commandstats")
                .query_async(&mut node)
                .await
                .with_context(|| {
                    format!("reading INFO cpu and commandstats of {}", redis.addr())
                })?;
            total.add(&RedisSample::parse(&format!("{cpu}\n{commands}")));
        }
        Ok(total)
    }

    /// The counters of one server's `INFO` text (the `cpu` and `commandstats` sections; other
    /// lines are ignored).
    pub fn parse(info: &str) -> RedisSample {
        let mut sample = RedisSample {
            primaries: 1,
            ..RedisSample::default()
        };
        for line in info.lines().map(str::trim) {
            if let Some((name, value)) = line.split_once(':') {
                if let Some(command) = name.strip_prefix("cmdstat_") {
                    sample
                        .commands
                        .insert(command.to_string(), command_totals(value));
                } else if name == "used_cpu_user" || name == "used_cpu_sys" {
                    sample.cpu_seconds += value.parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        sample
    }

    fn add(&mut self, other: &RedisSample) {
        self.cpu_seconds += other.cpu_seconds;
        self.primaries += other.primaries;
        for (command, t) in &other.commands {
            let sum = self.commands.entry(command.clone()).or_default();
            sum.calls += t.calls;
            sum.usec += t.usec;
        }
    }

    /// What Redis spent from `self` to `after`, for `units` units of work.
    pub fn cost_until(&self, after: &RedisSample, unit: &'static str, units: u64) -> RedisCost {
        let cpu_seconds = (after.cpu_seconds - self.cpu_seconds).max(0.0);
        let mut top_commands: Vec<CommandCost> = after
            .commands
            .iter()
            // The samples' own INFO calls are the measurement, not the work.
            .filter(|(command, _)| command.as_str() != "info")
            .map(|(command, t)| {
                let before = self.commands.get(command).copied().unwrap_or_default();
                CommandCost {
                    command: command.clone(),
                    calls: t.calls.saturating_sub(before.calls),
                    usec: t.usec.saturating_sub(before.usec),
                }
            })
            .filter(|c| c.calls > 0)
            .collect();
        top_commands.sort_by(|a, b| b.usec.cmp(&a.usec).then(a.command.cmp(&b.command)));
        top_commands.truncate(TOP_COMMANDS);
        RedisCost {
            primaries: after.primaries,
            cpu_seconds,
            unit,
            units,
            cpu_us_per_unit: if units == 0 {
                0.0
            } else {
                cpu_seconds * 1e6 / units as f64
            },
            top_commands,
        }
    }
}

/// `calls=1,usec=2,usec_per_call=2.00,...`: the calls and the µs.
fn command_totals(fields: &str) -> CommandTotals {
    let mut totals = CommandTotals::default();
    for field in fields.split(',') {
        match field.split_once('=') {
            Some(("calls", n)) => totals.calls = n.parse().unwrap_or(0),
            Some(("usec", n)) => totals.usec = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    totals
}

impl RedisCost {
    /// The lines the benchmark's table ends with.
    pub fn render(&self) -> String {
        let mut out = format!(
            "  redis: {:.3} s CPU on {} primary(ies), {:.1} µs per {} ({} {}s)\n",
            self.cpu_seconds,
            self.primaries,
            self.cpu_us_per_unit,
            self.unit,
            self.units,
            self.unit
        );
        for c in &self.top_commands {
            out.push_str(&format!(
                "    {:<26} {:>10} µs {:>9} calls\n",
                c.command, c.usec, c.calls
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
        used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n\
        used_cpu_sys_main_thread:1.400000\r\nused_cpu_user_main_thread:2.200000\r\n\
        \r\n# Commandstats\r\n\
        cmdstat_evalsha:calls=10,usec=500,usec_per_call=50.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=3,usec=90,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_client|list:calls=1,usec=7,usec_per_call=7.00,rejected_calls=0,failed_calls=0\r\n";

    const AFTER: &str = "# CPU\r\nused_cpu_sys:2.000000\r\nused_cpu_user:3.750000\r\n\
        \r\n# Commandstats\r\n\
        cmdstat_evalsha:calls=30,usec=2500,usec_per_call=83.33,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_xack:calls=20,usec=300,usec_per_call=15.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=5,usec=150,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_client|list:calls=1,usec=7,usec_per_call=7.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn info_text_gives_the_process_cpu_and_each_commands_counters() {
        let s = RedisSample::parse(BEFORE);
        // The children's CPU (fork for a save) and the main thread's share are left out.
        assert!((s.cpu_seconds - 3.75).abs() < 1e-9, "{}", s.cpu_seconds);
        assert_eq!(s.primaries, 1);
        assert_eq!(
            s.commands["evalsha"],
            CommandTotals {
                calls: 10,
                usec: 500
            }
        );
        assert_eq!(s.commands["client|list"].calls, 1);
        assert_eq!(
            RedisSample::parse("garbage\nused_cpu_sys:x"),
            RedisSample {
                primaries: 1,
                ..RedisSample::default()
            }
        );
    }

    #[test]
    fn a_cost_is_the_difference_ranked_by_time_without_the_samples_own_info() {
        let cost = RedisSample::parse(BEFORE).cost_until(&RedisSample::parse(AFTER), "game", 4);
        assert!(
            (cost.cpu_seconds - 2.0).abs() < 1e-9,
            "{}",
            cost.cpu_seconds
        );
        assert!((cost.cpu_us_per_unit - 500_000.0).abs() < 1e-6);
        let names: Vec<&str> = cost
            .top_commands
            .iter()
            .map(|c| c.command.as_str())
            .collect();
        // client|list did not run meanwhile; INFO is the measurement itself.
        assert_eq!(names, ["evalsha", "xack"]);
        assert_eq!(
            cost.top_commands[0],
            CommandCost {
                command: "evalsha".into(),
                calls: 20,
                usec: 2000
            }
        );
        assert_eq!(cost.top_commands[1].usec, 300);
        assert!(cost.render().contains("µs per game"));
    }

    #[test]
    fn primaries_add_up() {
        let mut sum = RedisSample::parse(BEFORE);
        sum.add(&RedisSample::parse(AFTER));
        assert_eq!(sum.primaries, 2);
        assert!((sum.cpu_seconds - 9.5).abs() < 1e-9);
        assert_eq!(sum.commands["evalsha"].calls, 40);
        assert_eq!(sum.commands["xack"].usec, 300);
        let none = RedisSample::default().cost_until(&RedisSample::default(), "record", 0);
        assert_eq!(none.cpu_us_per_unit, 0.0);
    }
}
