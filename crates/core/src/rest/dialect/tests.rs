//! Each dialect's requests, checked as data: paths, prefixes, bodies, unsupported operations.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::error::Error;
use crate::rest::request::{me, token, Route, Spec};

fn line(spec: &Spec) -> String {
  let query: Vec<String> = spec.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
  if query.is_empty() {
    format!("{} {}", spec.method, spec.path)
  } else {
    format!("{} {}?{}", spec.method, spec.path, query.join("&"))
  }
}

fn exec(cmd: &[&str]) -> ExecRequest {
  ExecRequest {
    cmd: cmd.iter().map(|s| s.to_string()).collect(),
    ..Default::default()
  }
}

fn body(spec: Result<Spec>) -> Value {
  match spec.unwrap().body {
    crate::rest::request::Body::Json(value) => value,
    other => panic!("not a JSON body: {other:?}"),
  }
}

#[test]
fn settings_name_the_dialects_they_allow() {
  assert_eq!(Dialect::allowed_by("auto"), Some(Dialect::ALL));
  assert_eq!(Dialect::allowed_by("sse"), Some(SSE_ERA));
  assert_eq!(Dialect::allowed_by("sse-serve"), Some(&[Dialect::SseServe][..]));
  assert_eq!(Dialect::allowed_by("boxlite"), Some(&[Dialect::Current][..]));
  assert_eq!(Dialect::allowed_by("boxrun"), Some(&[Dialect::Boxrun][..]));
  assert_eq!(Dialect::allowed_by("sse2"), None);
  for dialect in Dialect::ALL {
    assert_eq!(Dialect::allowed_by(dialect.name()), Some(&[*dialect][..]));
  }
}

#[test]
fn prefixes_follow_each_dialect_and_config_is_never_prefixed() {
  let a = Route::new(Dialect::SseRef, "/", Some("default"));
  let b = Route::new(Dialect::Current, "/api/", Some("us-east/team-42"));
  let b_bare = Route::new(Dialect::Current, "", None);
  let c = Route::new(Dialect::Boxrun, "/", Some("ignored"));
  assert_eq!(line(&a.get_box("x")), "GET /v1/default/boxes/x");
  assert_eq!(line(&b.get_box("x")), "GET /api/v1/us-east/team-42/boxes/x");
  assert_eq!(line(&b_bare.get_box("x")), "GET /v1/boxes/x");
  assert_eq!(line(&c.get_box("x")), "GET /v1/boxes/x");
  assert_eq!(line(&a.config()), "GET /v1/config");
  assert_eq!(line(&b.config()), "GET /api/v1/config");
  assert_eq!(line(&c.config()), "GET /v1/info");
  assert_eq!(line(&me(b.v1())), "GET /api/v1/me");
  assert_eq!(line(&token(a.v1(), String::new())), "POST /v1/oauth/tokens");
  assert!(!a.config().auth && !token(a.v1(), String::new()).auth && a.get_box("x").auth);
  assert_eq!(line(&metrics(&a)), "GET /v1/default/metrics");
  assert_eq!(line(&metrics(&b_bare)), "GET /v1/metrics");
}

#[test]
fn routes_per_operation_and_dialect() {
  let a = Route::new(Dialect::SseRef, "/", Some("p"));
  let s = Route::new(Dialect::SseServe, "/", Some("p"));
  let b = Route::new(Dialect::Current, "/", None);
  let c = Route::new(Dialect::Boxrun, "/", None);
  let (pa, ps, pb, pc) = (a.profile(), s.profile(), b.profile(), c.profile());
  let cases: Vec<(Spec, &str)> = vec![
    (pa.lifecycle(&a, "b1", Action::Start), "POST /v1/p/boxes/b1/start"),
    (pc.lifecycle(&c, "b1", Action::Stop), "POST /v1/boxes/b1:stop"),
    (a.delete_box("b1", true), "DELETE /v1/p/boxes/b1?force=true"),
    (c.delete_box("b1", false), "DELETE /v1/boxes/b1"),
    (
      pa.list_boxes(&a, Some("running"), Some(50), Some("t")),
      "GET /v1/p/boxes?status=running&pageSize=50&pageToken=t",
    ),
    (
      pc.list_boxes(&c, Some("running"), Some(50), None),
      "GET /v1/boxes?status=running",
    ),
    (
      pa.output(&a, "b1", "e1"),
      "GET /v1/p/boxes/b1/executions/e1/output",
    ),
    (
      ps.output(&s, "b1", "e1"),
      "GET /v1/p/boxes/b1/executions/e1/output",
    ),
    (pb.output(&b, "b1", "e1"), "GET /v1/boxes/b1/executions/e1/attach"),
    (pc.output(&c, "b1", "e1"), "GET /v1/boxes/b1/exec/e1/events"),
    (
      pa.kill(&a, "b1", "e1"),
      "POST /v1/p/boxes/b1/executions/e1/signal",
    ),
    (pb.kill(&b, "b1", "e1"), "DELETE /v1/boxes/b1/executions/e1"),
    (pc.kill(&c, "b1", "e1"), "POST /v1/boxes/b1/exec/e1:cancel"),
    (
      pb.signal(&b, "b1", "e1", 9).unwrap(),
      "DELETE /v1/boxes/b1/executions/e1",
    ),
    (
      pb.signal(&b, "b1", "e1", 2).unwrap(),
      "POST /v1/boxes/b1/executions/e1/signal",
    ),
    (
      pc.signal(&c, "b1", "e1", 15).unwrap(),
      "POST /v1/boxes/b1/exec/e1:cancel",
    ),
    (
      pa.input(&a, "b1", "e1", true).unwrap(),
      "POST /v1/p/boxes/b1/executions/e1/input",
    ),
    (
      upload(&a, "b1", "/root/x dir"),
      "PUT /v1/p/boxes/b1/files?path=/root/x dir&overwrite=true",
    ),
    (download(&b, "b1", "/etc"), "GET /v1/boxes/b1/files?path=/etc"),
    (upload_file(&c, "b1"), "POST /v1/boxes/b1/files/upload"),
    (download_file(&c, "b1", "/f"), "POST /v1/boxes/b1/files/download"),
    (
      restore_snapshot(&a, "b1", "s 1"),
      "POST /v1/p/boxes/b1/snapshots/s%201/restore",
    ),
    (import_box(&b), "POST /v1/boxes/import"),
    (export_box(&b, "b1"), "POST /v1/boxes/b1/export"),
    (pc.exec(&c, "b1", &exec(&["true"])), "POST /v1/boxes/b1/exec"),
  ];
  for (spec, expected) in cases {
    assert_eq!(line(&spec), expected);
  }
  assert_eq!(
    pa.input(&a, "b", "e", true).unwrap().headers,
    vec![("X-Close-Stdin", "true")]
  );
}

#[test]
fn ids_in_paths_are_percent_encoded() {
  let c = Route::new(Dialect::Boxrun, "/", None);
  assert_eq!(c.get_box("a/b c:d").path, "/v1/boxes/a%2Fb%20c%3Ad");
  assert_eq!(
    c.profile().lifecycle(&c, "a:b", Action::Start).path,
    "/v1/boxes/a%3Ab:start"
  );
}

#[test]
fn boxrun_has_no_optional_groups_stdin_signals_or_resize() {
  let c = Route::new(Dialect::Boxrun, "/", None);
  let p = c.profile();
  let errors = [
    require_extras(&c, "createSnapshot").unwrap_err(),
    p.input(&c, "b", "e", false).unwrap_err(),
    p.signal(&c, "b", "e", 10).unwrap_err(),
    p.resize(&c, "b", "e", 1, 1).unwrap_err(),
    p.create_box(
      &c,
      &CreateBoxParams {
        rootfs_path: Some("/r".into()),
        ..Default::default()
      },
    )
    .unwrap_err(),
  ];
  for error in errors {
    assert_eq!(error.code(), "unsupported");
    assert!(
      error
        .to_string()
        .ends_with("is not supported by BoxRun server (dialect boxrun)"),
      "{error}"
    );
  }
  for dialect in [Dialect::SseRef, Dialect::SseServe, Dialect::Current] {
    assert!(require_extras(&Route::new(dialect, "/", None), "createSnapshot").is_ok());
  }
}

#[test]
fn only_safe_requests_are_marked_idempotent() {
  let a = Route::new(Dialect::SseRef, "/", Some("p"));
  let p = a.profile();
  assert!(a.get_box("b").idempotent);
  assert!(a.delete_box("b", false).idempotent);
  assert!(!p.exec(&a, "b", &exec(&["true"])).idempotent);
  assert!(
    !p.output(&a, "b", "e").idempotent,
    "the SSE-era output stream is take-once"
  );
  assert!(
    !upload(&a, "b", "/x").idempotent,
    "a consumed body stream cannot be replayed"
  );
}

#[test]
fn form_bodies_never_print() {
  let spec = token("/v1", "client_secret=s3cr3t".into());
  assert!(!format!("{spec:?}").contains("s3cr3t"));
}

#[test]
fn exec_bodies_follow_each_dialect() {
  let mut env = BTreeMap::new();
  env.insert("K".to_string(), "v".to_string());
  let request = ExecRequest {
    env: Some(env),
    timeout_seconds: Some(1.5),
    tty: Some(false),
    ..exec(&["echo", "hi"])
  };
  let exec_body = |dialect: Dialect, request: &ExecRequest| {
    let route = Route::new(dialect, "/", None);
    body(Ok(dialect.profile().exec(&route, "b", request)))
  };
  let boxlite =
    json!({"command": "echo", "args": ["hi"], "env": {"K": "v"}, "timeout_seconds": 1.5, "tty": false});
  assert_eq!(exec_body(Dialect::SseRef, &request), boxlite);
  assert_eq!(exec_body(Dialect::SseServe, &request), boxlite);
  assert_eq!(
    exec_body(Dialect::Current, &exec(&["true"])),
    json!({"command": "true", "args": []})
  );
  assert_eq!(
    exec_body(Dialect::Boxrun, &request),
    json!({"cmd": ["echo", "hi"], "env": {"K": "v"}, "timeout_ms": 1500})
  );
}

#[test]
fn create_bodies_rename_fields_per_dialect() {
  let params = CreateBoxParams {
    image: Some("alpine".into()),
    cpu: Some(2),
    memory_mb: Some(512),
    working_dir: Some("/w".into()),
    ports: Some(vec![(8080, 80)]),
    labels: Some(BTreeMap::new()),
    entrypoint: Some(json!("/bin/sh")),
    ..Default::default()
  };
  let create_body = |dialect: Dialect, params: &CreateBoxParams| {
    let route = Route::new(dialect, "/", None);
    body(dialect.profile().create_box(&route, params))
  };
  let sse_era = json!({"image": "alpine", "cpus": 2, "memory_mib": 512, "working_dir": "/w", "entrypoint": ["/bin/sh"],
           "auto_remove": false, "ports": [{"host_port": 8080, "guest_port": 80}]});
  assert_eq!(create_body(Dialect::SseRef, &params), sse_era);
  assert_eq!(create_body(Dialect::SseServe, &params), sse_era);
  assert_eq!(
    create_body(Dialect::Current, &params),
    json!({"image": "alpine", "cpus": 2, "memory_mib": 512, "working_dir": "/w", "entrypoint": ["/bin/sh"]})
  );
  assert_eq!(
    create_body(Dialect::Boxrun, &params),
    json!({"image": "alpine", "cpu": 2, "memory_mb": 512, "workdir": "/w", "network": true})
  );
  let isolated = CreateBoxParams {
    network: Some(json!({"mode": "disabled"})),
    ..Default::default()
  };
  assert_eq!(create_body(Dialect::Boxrun, &isolated), json!({"network": false}));
  assert_eq!(
    create_body(Dialect::Current, &isolated),
    json!({"network": {"mode": "disabled"}})
  );
}

#[test]
fn per_direction_network_goes_as_is_to_current_and_folded_elsewhere() {
  let create_body = |dialect: Dialect, params: &CreateBoxParams| {
    let route = Route::new(dialect, "/", None);
    body(dialect.profile().create_box(&route, params))
  };
  let params = CreateBoxParams {
    network: Some(
      json!({"outbound": {"mode": "disabled", "allow_net": ["a.example"]},
                         "inbound": {"mode": "enabled"}}),
    ),
    ..Default::default()
  };
  assert_eq!(
    create_body(Dialect::Current, &params)["network"],
    params.network.clone().unwrap()
  );
  for sse_era in SSE_ERA {
    assert_eq!(
      create_body(*sse_era, &params)["network"],
      json!({"mode": "disabled", "allow_net": ["a.example"]})
    );
  }
  assert_eq!(create_body(Dialect::Boxrun, &params)["network"], json!(false));
  let inbound_only = CreateBoxParams {
    network: Some(json!({"inbound": {"mode": "enabled"}})),
    ..Default::default()
  };
  assert_eq!(
    create_body(Dialect::SseRef, &inbound_only)["network"],
    json!({"mode": "enabled"})
  );
  assert_eq!(
    create_body(Dialect::Boxrun, &inbound_only)["network"],
    json!(true)
  );
}

#[test]
fn refusals_of_what_is_already_the_case_are_successes_where_the_dialect_refuses_them() {
  let api = |status: u16, code: &str, message: &str| {
    Err(Error::Api(Box::new(crate::error::ApiError {
      status,
      error_type: None,
      code: Some(code.into()),
      message: message.into(),
      method: "POST".into(),
      path: "/p".into(),
    })))
  };
  let boxrun = Dialect::Boxrun.profile();
  assert!(boxrun
    .lifecycle_reply(Action::Start, api(409, "BOX_ALREADY_RUNNING", "m"))
    .is_ok());
  assert!(boxrun
    .lifecycle_reply(Action::Stop, api(400, "BOX_NOT_RUNNING", "m"))
    .is_ok());
  assert!(boxrun
    .lifecycle_reply(Action::Start, api(400, "BOX_NOT_RUNNING", "m"))
    .is_err());
  let deleted = Dialect::SseRef
    .profile()
    .delete_reply("b1", api(500, "InternalError", "not found: b1"));
  assert_eq!(deleted.unwrap_err().code(), "not_found");
  let current = Dialect::Current
    .profile()
    .delete_reply("b1", api(500, "InternalError", "not found: b1"));
  assert_eq!(current.unwrap_err().code(), "api_error");
}

/// A 404 reply to `spec`, shaped like a server's.
fn refused_404(spec: &Spec) -> Error {
  spec.refusal(crate::rest::wire::parse_api_error(
    404,
    br#"{"error": {"message": "gone", "type": "NotFoundError"}}"#,
    spec.method.as_str(),
    &spec.path,
  ))
}

/// Every request each dialect builds about one box or one of its executions or snapshots.
fn requests_about_b1(route: &Route) -> Vec<(Spec, &'static str, &'static str)> {
  let p = route.profile();
  let mut about = vec![
    (route.get_box("b1"), "box", "b1"),
    (route.delete_box("b1", true), "box", "b1"),
    (p.lifecycle(route, "b1", Action::Start), "box", "b1"),
    (p.lifecycle(route, "b1", Action::Stop), "box", "b1"),
    (p.exec(route, "b1", &exec(&["true"])), "box", "b1"),
    (route.exec_status("b1", "e1"), "execution", "e1"),
    (p.output(route, "b1", "e1"), "execution", "e1"),
    (p.kill(route, "b1", "e1"), "execution", "e1"),
  ];
  for spec in [
    p.input(route, "b1", "e1", false),
    p.signal(route, "b1", "e1", 2),
    p.resize(route, "b1", "e1", 80, 24),
  ]
  .into_iter()
  .flatten()
  {
    about.push((spec, "execution", "e1"));
  }
  if let Some(spec) = p.box_terminal(route, "b1", "sh", "xterm", (80, 24)) {
    about.push((spec, "box", "b1"));
  }
  match p.upload() {
    Upload::TarEndpoint => about.push((upload(route, "b1", "/x"), "box", "b1")),
    Upload::Staged => about.push((upload_file(route, "b1"), "box", "b1")),
    Upload::ExecStdin => {}
  }
  match p.download() {
    Download::TarEndpoint => about.push((download(route, "b1", "/x"), "box", "b1")),
    Download::Staged => about.push((download_file(route, "b1", "/x"), "box", "b1")),
  }
  if p.extras() {
    about.extend([
      (create_snapshot(route, "b1", "s1"), "box", "b1"),
      (list_snapshots(route, "b1"), "box", "b1"),
      (restore_snapshot(route, "b1", "s1"), "snapshot", "s1"),
      (delete_snapshot(route, "b1", "s1"), "snapshot", "s1"),
      (clone_box(route, "b1", None), "box", "b1"),
      (export_box(route, "b1"), "box", "b1"),
      (box_metrics(route, "b1"), "box", "b1"),
    ]);
  }
  about
}

#[test]
fn a_404_on_any_box_route_of_every_dialect_is_not_found_about_what_the_path_names() {
  for dialect in Dialect::ALL {
    let route = Route::new(*dialect, "/", Some("p"));
    for (spec, what, id) in requests_about_b1(&route) {
      let error = refused_404(&spec);
      let request = format!("{dialect}: {}", line(&spec));
      match &error {
        Error::NotFound {
          what: w,
          id: i,
          reply: Some(reply),
        } => {
          assert_eq!((*w, i.as_str()), (what, id), "{request}");
          assert_eq!(reply.message, "gone", "{request}: the server's message is kept");
        }
        other => panic!("{request}: {other:?}"),
      }
      assert!(error.is_not_found(), "{request}");
      assert!(error.to_string().contains("gone"), "{request}: {error}");
    }
  }
}

#[test]
fn a_404_on_a_detection_probe_or_a_collection_stays_a_status() {
  for dialect in Dialect::ALL {
    let route = Route::new(*dialect, "/", None);
    let p = route.profile();
    let probes = [
      route.config(),
      me(route.v1()),
      token(route.v1(), String::new()),
      crate::rest::request::public(route.v1(), "info"),
      p.list_boxes(&route, None, None, None),
      p.create_box(&route, &CreateBoxParams::default()).unwrap(),
    ];
    for spec in probes {
      match refused_404(&spec) {
        Error::Api(api) => assert_eq!(api.status, 404, "{dialect}: {}", line(&spec)),
        other => panic!("{dialect}: {}: {other:?}", line(&spec)),
      }
    }
  }
}

#[test]
fn other_refusals_of_a_box_route_stay_api_errors() {
  let route = Route::new(Dialect::Current, "/", None);
  let spec = route.get_box("b1");
  let conflict = spec.refusal(crate::rest::wire::parse_api_error(
    409, b"busy", "GET", &spec.path,
  ));
  assert!(
    matches!(&conflict, Error::Api(api) if api.status == 409),
    "{conflict:?}"
  );
}
