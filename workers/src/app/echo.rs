//! The built-in `echo` app: 200 for every method and path, answering a JSON object with
//! what reached the app (method, path, query, headers as received, body), so tests and
//! users can see exactly what the server passed on.

use std::io::Read;

use serde_json::json;

use super::{App, Environ, Input, Mode, Response};

pub struct Echo;

impl App for Echo {
    fn mode(&self) -> Mode {
        Mode::Inline
    }

    fn call(&self, environ: &Environ, input: &mut Input) -> Response {
        let mut body = Vec::new();
        if let Err(err) = input.read_to_end(&mut body) {
            return Response::json(500, &json!({"code": "ERROR", "message": err.to_string()}));
        }
        let headers: Vec<[&str; 2]> = environ
            .headers
            .iter()
            .map(|(n, v)| [n.as_str(), v.as_str()])
            .collect();
        Response::json(
            200,
            &json!({
                "method": environ.method,
                "path": environ.path_info,
                "query": environ.query_string,
                "raw_uri": environ.raw_uri,
                "scheme": environ.url_scheme,
                "remote_addr": environ.remote_addr,
                "server_name": environ.server_name,
                "server_port": environ.server_port,
                "protocol": environ.server_protocol,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
                "body_length": body.len(),
            }),
        )
    }
}
