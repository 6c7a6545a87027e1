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
        /// A file path or file:///abs/path.ts.
        url: String,
        /// Stop after this much stream time, in seconds (timed by PCR).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        duration: Option<f64>,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
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
        Command::Probe { url, duration, json } => match uringest::probe::probe(&url, duration) {
            Ok(report) => {
                if json {
                    match serde_json::to_string_pretty(&report) {
                        Ok(text) => println!("{text}"),
                        Err(e) => {
                            eprintln!("uringest: cannot encode report: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    print!("{}", uringest::probe::render_text(&report));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("uringest: {e}");
                ExitCode::from(2)
            }
        },
    }
}
