//! The built-in default app: the reference deployment's welcome API.
//!
//! `GET /api/v1/welcome/get_welcome_data` answers the welcome JSON exactly as the Flask
//! backend did; other paths get a JSON 404 and other methods on that path a 405 with `Allow`.

use super::{App, Body, Environ, Input, Mode, Response};

pub const WELCOME_PATH: &str = "/api/v1/welcome/get_welcome_data";
pub const WELCOME_BODY: &[u8] =
    br#"{"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}"#;
const NOT_FOUND_BODY: &[u8] =
    br#"{"code": "NOT_FOUND", "message": "The requested URL was not found on the server."}"#;
const NOT_ALLOWED_BODY: &[u8] = br#"{"code": "METHOD_NOT_ALLOWED", "message": "The method is not allowed for the requested URL."}"#;
const JSON: &str = "application/json; charset=utf-8";

pub struct Welcome;

impl App for Welcome {
    fn mode(&self) -> Mode {
        Mode::Inline
    }

    fn call(&self, environ: &Environ, _input: &mut Input) -> Response {
        let json = ("Content-Type".into(), JSON.into());
        if environ.path_info != WELCOME_PATH {
            return Response::new(404, vec![json], Body::Static(NOT_FOUND_BODY));
        }
        match environ.method.as_str() {
            // Flask answers HEAD and OPTIONS for a GET route by itself; so do we.
            "GET" | "HEAD" => Response::new(200, vec![json], Body::Static(WELCOME_BODY)),
            "OPTIONS" => Response::new(
                200,
                vec![("Allow".into(), "GET, HEAD, OPTIONS".into())],
                Body::Empty,
            ),
            _ => Response::new(
                405,
                vec![json, ("Allow".into(), "GET, HEAD, OPTIONS".into())],
                Body::Static(NOT_ALLOWED_BODY),
            ),
        }
    }
}
