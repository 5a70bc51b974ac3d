//! The command line: defaults are the container tests' pod; `make dev-pod` adds `--print`
//! and a folder for variables.

use std::path::PathBuf;

pub(crate) const USAGE: &str = "usage: direktiv-cmd-test-sidecar [--print] [--vars DIR] \
[--shared DIR] [--runner URL] [--log-port N] [--front-port N]
  --print         print every log post, call and variable as it happens
  --vars DIR      keep variables as DIR/<scope>/<name> (/var and out/ folders); default: none
  --shared DIR    where action folders are made (Direktiv-TempDir); default /mnt/shared
  --runner URL    the function's runner; default http://127.0.0.1:8080
  --log-port N    the loopback port of /log and /var; default 8889 (0: any)
  --front-port N  the port the function is called through; default 8890 (0: any)";

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) print: bool,
    pub(crate) vars: Option<PathBuf>,
    pub(crate) shared: PathBuf,
    pub(crate) runner: String,
    pub(crate) log_port: u16,
    pub(crate) front_port: u16,
}

impl Options {
    pub(crate) fn from_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            print: false,
            vars: None,
            shared: PathBuf::from("/mnt/shared"),
            runner: "http://127.0.0.1:8080".to_owned(),
            log_port: 8889,
            front_port: 8890,
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--print" => options.print = true,
                "--vars" => options.vars = Some(PathBuf::from(value()?)),
                "--shared" => options.shared = PathBuf::from(value()?),
                "--runner" => options.runner = value()?.trim_end_matches('/').to_owned(),
                "--log-port" => options.log_port = port(&value()?)?,
                "--front-port" => options.front_port = port(&value()?)?,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(options)
    }
}

fn port(text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| format!("{text} is not a port"))
}
