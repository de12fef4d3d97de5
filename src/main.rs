//! `rgunicorn [OPTIONS] [APP]`: everything is in the library; see [`rgunicorn::main_with`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(u8::try_from(rgunicorn::main_with(None)).unwrap_or(1))
}
