//! The `uringest` command line. The only place that prints and picks exit
//! codes: 0 success, 2 for anything wrong with the operator's input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// MPEG-TS ingest node for Linux.
#[derive(Parser, Debug)]
#[command(name = "uringest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read an input to its end (or for --duration) and summarise it:
    /// programs, streams, per-PID packets, bitrate, errors.
    Probe {
        /// A file path, file:///abs/path.ts, or udp://group:port?options.
        url: String,
        /// Files: stop after this much stream time (timed by PCR). Live
        /// inputs: listen this long (default 5 s).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        duration: Option<f64>,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// I/O backend for live inputs: auto, uring or epoll.
        #[arg(long, value_name = "BACKEND", default_value = "auto")]
        io: uringest::shard::IoChoice,
    },
    /// Load generators and measurements.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Play files looped and paced by PCR, many at once, and report the CPU
    /// they cost and how late emissions are against their PCR time.
    Pace {
        /// Transport-stream files, used in turn by the streams.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Streams to play at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        streams: u32,
        /// Seconds to play.
        #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
        duration: f64,
        /// Shards (threads, one per core by default).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: Option<u32>,
        /// I/O backend: auto, uring or epoll.
        #[arg(long, value_name = "BACKEND", default_value = "auto")]
        io: uringest::shard::IoChoice,
        /// Shortest time between two wake-ups of a stream, in microseconds.
        #[arg(long, value_name = "US", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        quantum_us: u64,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

/// Cores available to this process: the default shard count.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Prints `value` as JSON or as text, and the exit code for that.
fn print_report<T: serde::Serialize>(value: &T, json: bool, text: impl FnOnce(&T) -> String) -> ExitCode {
    if !json {
        print!("{}", text(value));
        return ExitCode::SUCCESS;
    }
    match serde_json::to_string_pretty(value) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uringest: cannot encode report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    // Warnings (a clamped receive buffer, a missing io_uring) go to stderr;
    // URINGEST_LOG=info (or debug) shows more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("URINGEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message runs over several lines; keep its first
            // paragraph (the problem and the argument named) on one line.
            let rendered = e.render().to_string();
            let problem: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim().trim_start_matches("error: "))
                .collect();
            eprintln!("uringest: {} (see uringest --help)", problem.join(" "));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Probe { url, duration, json, io } => {
            match uringest::probe::probe(&url, uringest::probe::ProbeOptions { duration_secs: duration, io }) {
                Ok(report) => print_report(&report, json, uringest::probe::render_text),
                Err(e) => {
                    eprintln!("uringest: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench { what: BenchCommand::Pace { files, streams, duration, shards, io, quantum_us, json } } => {
            let options = uringest::bench::pace::PaceBenchOptions {
                files,
                streams: streams as usize,
                duration: std::time::Duration::from_secs_f64(duration),
                shards: shards.map_or_else(cores, |n| n as usize),
                io,
                quantum: std::time::Duration::from_micros(quantum_us),
            };
            match uringest::bench::pace::run(&options) {
                Ok(report) => print_report(&report, json, uringest::bench::pace::render_text),
                Err(e) => {
                    eprintln!("uringest: bench pace: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
