//! The built-in default app: the reference deployment's welcome API.
//!
//! `GET /api/v1/welcome/get_welcome_data` answers the welcome JSON exactly as the Flask
//! backend did; other paths get a JSON 404 and other methods on that path a 405 with `Allow`.

use std::borrow::Cow;

use super::{App, Body, Environ, Header, Input, Mode, Response};

pub const WELCOME_PATH: &str = "/api/v1/welcome/get_welcome_data";
pub const WELCOME_BODY: &[u8] =
    br#"{"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}"#;
const NOT_FOUND_BODY: &[u8] =
    br#"{"code": "NOT_FOUND", "message": "The requested URL was not found on the server."}"#;
const NOT_ALLOWED_BODY: &[u8] = br#"{"code": "METHOD_NOT_ALLOWED", "message": "The method is not allowed for the requested URL."}"#;
const JSON: &str = "application/json; charset=utf-8";
// Static header lists: answering allocates nothing.
const CONTENT_TYPE: Header = (Cow::Borrowed("Content-Type"), Cow::Borrowed(JSON));
const ALLOW: Header = (Cow::Borrowed("Allow"), Cow::Borrowed("GET, HEAD, OPTIONS"));
const JSON_ONLY: &[Header] = &[CONTENT_TYPE];
const ALLOW_ONLY: &[Header] = &[ALLOW];
const JSON_AND_ALLOW: &[Header] = &[CONTENT_TYPE, ALLOW];

pub struct Welcome;

impl App for Welcome {
    fn mode(&self) -> Mode {
        Mode::Inline
    }

    fn call(&self, environ: &Environ, _input: &mut Input) -> Response {
        if environ.path_info != WELCOME_PATH {
            return Response::new(404, JSON_ONLY, Body::Static(NOT_FOUND_BODY));
        }
        match environ.method.as_str() {
            // Flask answers HEAD and OPTIONS for a GET route by itself; so do we.
            "GET" | "HEAD" => Response::new(200, JSON_ONLY, Body::Static(WELCOME_BODY)),
            "OPTIONS" => Response::new(200, ALLOW_ONLY, Body::Empty),
            _ => Response::new(405, JSON_AND_ALLOW, Body::Static(NOT_ALLOWED_BODY)),
        }
    }
}
