//! Unit tests of the sandbox semantics over the configurable `FakeClient`.

use tokio::time::Instant;

use super::exec::{exec_outcome, TIMEOUT_WRAPPER};
use super::*;
use crate::adapter::Adapter;
use crate::client::ExecOutput;
use crate::testing::FakeClient;
use serde_json::json;

fn adapter_with(client: FakeClient) -> (Adapter, std::sync::Arc<FakeClient>) {
  let client = std::sync::Arc::new(client);
  let adapter = Adapter::with_client(&json!({"apiUrl": "http://api.example.com:9090"}), client.clone());
  (adapter, client)
}

fn config(value: serde_json::Value) -> CreateConfig {
  serde_json::from_value(value).unwrap()
}

/// A create with a 0.3 s deadline, which must reject well before a slow request answers.
async fn create_past_a_short_deadline(adapter: &Adapter) -> Error {
  let started = Instant::now();
  let err = adapter
    .create_sandbox(&config(json!({"timeout": 0.3})))
    .await
    .unwrap_err();
  assert!(
    started.elapsed() < Duration::from_millis(1500),
    "{:?}",
    started.elapsed()
  );
  err
}

#[test]
fn state_mapping_follows_the_contract() {
  for (status, state) in [
    ("configured", "creating"),
    ("creating", "creating"),
    ("running", "running"),
    ("stopping", "stopped"),
    ("stopped", "stopped"),
    ("paused", "stopped"),
    ("failed", "error"),
    ("unknown", "error"),
    ("", "error"),
  ] {
    assert_eq!(sandbox_state(status), state, "{status}");
  }
}

#[test]
fn create_params_use_rootfs_path_for_absolute_images_and_keep_boxes_after_stop() {
  let params = create_params(&config(json!({"image": "/srv/oci/debian"}))).unwrap();
  assert_eq!(
    (params.image, params.rootfs_path.as_deref()),
    (None, Some("/srv/oci/debian"))
  );
  assert_eq!(params.auto_remove, Some(false));
  let params = create_params(&CreateConfig::default()).unwrap();
  assert_eq!(params.image.as_deref(), Some("ubuntu:24.04"));
}

#[test]
fn create_params_map_resources_env_ports_and_user() {
  let params = create_params(&config(json!({
    "resources": {"cpu": 2, "memory": 1024, "disk": 8},
    "env": {"A": "1"}, "ports": [[18080, 80]], "user": {"name": "dev", "uid": 1001},
    "region": "ignored", "skills": []
  })))
  .unwrap();
  assert_eq!(
    (params.cpu, params.memory_mb, params.disk_size_gb),
    (Some(2), Some(1024), Some(8))
  );
  assert_eq!(params.env.unwrap()["A"], "1");
  assert_eq!(params.ports, Some(vec![(18080, 80)]));
  assert_eq!(params.user.as_deref(), Some("dev"));
}

#[test]
fn create_params_reject_fractional_or_zero_resources_naming_the_field() {
  let err = create_params(&config(json!({"resources": {"cpu": 1.5}}))).unwrap_err();
  assert_eq!(
    err.to_string(),
    "config.resources.cpu must be a whole number >= 1, got 1.5"
  );
  assert!(create_params(&config(json!({"resources": {"memory": 0}}))).is_err());
}

#[test]
fn exec_request_runs_bash_with_cwd() {
  let request = exec_request(
    "pwd",
    &ExecOptions {
      cwd: Some("/tmp".into()),
      timeout: None,
    },
  )
  .unwrap();
  assert_eq!(request.cmd, ["bash", "-c", "pwd"]);
  assert_eq!(request.working_dir.as_deref(), Some("/tmp"));
  assert_eq!(request.timeout_seconds, None);
}

#[test]
fn exec_request_with_timeout_kills_the_process_group_in_the_guest_before_the_client_does() {
  let request = exec_request(
    "sleep 9",
    &ExecOptions {
      cwd: None,
      timeout: Some(1500.0),
    },
  )
  .unwrap();
  assert_eq!(request.cmd[..4], ["bash", "-c", TIMEOUT_WRAPPER, "sandbank-exec"]);
  assert_eq!(request.cmd[4..], ["1.500", "sleep 9"]);
  assert_eq!(request.timeout_seconds, Some(3.5));
  let no_timeout = exec_request(
    "x",
    &ExecOptions {
      timeout: Some(0.0),
      ..Default::default()
    },
  )
  .unwrap();
  assert_eq!(no_timeout.timeout_seconds, None);
  assert!(exec_request(
    "x",
    &ExecOptions {
      timeout: Some(-1.0),
      ..Default::default()
    }
  )
  .is_err());
}

#[tokio::test]
async fn create_starts_a_configured_box_and_returns_once_it_runs() {
  let (adapter, client) = adapter_with(FakeClient::new().boot_polls(3));
  let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
  assert_eq!(info.state, "running");
  assert_eq!(client.calls_of("start_box"), 1);
  assert!(client.calls_of("get_box") >= 3);
}

#[tokio::test]
async fn create_resolves_on_a_start_answer_that_says_running_without_polling() {
  let (adapter, client) = adapter_with(FakeClient::new().start_answers_with_the_box());
  let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
  assert_eq!(info.state, "running");
  assert_eq!((client.calls_of("start_box"), client.calls_of("get_box")), (1, 0));
}

#[tokio::test]
async fn create_polls_when_the_start_answer_is_not_running_yet() {
  let (adapter, client) = adapter_with(FakeClient::new().boot_polls(2).start_answers_with_the_box());
  let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
  assert_eq!(info.state, "running");
  assert!(client.calls_of("get_box") >= 2);
}

#[tokio::test]
async fn create_that_never_runs_deletes_the_box_and_names_the_last_status() {
  let (adapter, client) = adapter_with(FakeClient::new().boot_polls(u32::MAX));
  let err = adapter
    .create_sandbox(&config(json!({"timeout": 0.2})))
    .await
    .unwrap_err();
  assert_eq!(
    err.to_string(),
    "Sandbox failed to start within 1s (status: configured)"
  );
  assert_eq!(err.code(), "start_timeout");
  assert_eq!(client.calls_of("delete_box(force)"), 1);
  assert!(client.box_ids().is_empty());
}

#[tokio::test]
async fn create_deadline_holds_while_the_start_request_is_in_flight_and_the_box_is_deleted() {
  let (adapter, client) = adapter_with(FakeClient::new().slow_start(Duration::from_secs(3)));
  let err = create_past_a_short_deadline(&adapter).await;
  assert_eq!(
    err.to_string(),
    "Sandbox failed to start within 1s (status: configured)"
  );
  adapter.dispose().await.unwrap();
  assert!(client.box_ids().is_empty(), "{:?}", client.box_ids());
  // The client is released only after the start in flight answered: an SDK runtime that a
  // call still uses cannot be shut down (its home would stay locked).
  assert_eq!(
    client.calls_of("start_box"),
    1,
    "dispose returned while the start was in flight"
  );
}

#[tokio::test]
async fn create_deadline_holds_while_the_create_request_is_in_flight_and_the_box_is_deleted_later() {
  let (adapter, client) = adapter_with(FakeClient::new().slow_create(Duration::from_secs(2)));
  let err = create_past_a_short_deadline(&adapter).await;
  assert_eq!(err.code(), "start_timeout");
  assert!(err.to_string().ends_with("(status: creating)"), "{err}");
  // dispose waits for the create to answer and its box to be deleted.
  adapter.dispose().await.unwrap();
  assert_eq!(client.calls_of("create_box"), 1);
  assert_eq!(
    client.calls_of("start_box"),
    0,
    "an abandoned create is not started"
  );
  assert!(client.box_ids().is_empty(), "{:?}", client.box_ids());
}

#[tokio::test]
async fn create_stops_waiting_when_the_box_failed() {
  let (adapter, client) = adapter_with(FakeClient::new().fail_boot("image pull failed"));
  let started = Instant::now();
  let err = adapter
    .create_sandbox(&CreateConfig::default())
    .await
    .unwrap_err();
  assert!(started.elapsed() < Duration::from_secs(5));
  assert!(
    err.to_string().contains("status: failed: image pull failed"),
    "{err}"
  );
  assert!(client.box_ids().is_empty());
}

#[tokio::test]
async fn destroy_is_idempotent_for_missing_boxes() {
  let (adapter, _client) = adapter_with(FakeClient::new());
  let info = adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
  adapter.destroy_sandbox(&info.id).await.unwrap();
  adapter.destroy_sandbox(&info.id).await.unwrap();
  adapter.destroy_sandbox("never-existed").await.unwrap();
}

#[tokio::test]
async fn impossible_ids_are_not_found_without_any_request() {
  let (adapter, client) = adapter_with(FakeClient::new());
  for id in ["", ".", "..", "a/../b"] {
    let err = adapter.get_sandbox(id).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{id:?}");
    adapter.destroy_sandbox(id).await.unwrap();
    let err = adapter
      .exec(id, "true", &ExecOptions::default())
      .await
      .unwrap_err();
    assert_eq!(err.code(), "not_found", "{id:?}");
  }
  assert_eq!(
    client.calls_of("get_box") + client.calls_of("delete_box(force)"),
    0
  );
}

#[tokio::test]
async fn list_filters_by_one_or_many_states_and_limits() {
  let (adapter, client) = adapter_with(FakeClient::new());
  for _ in 0..3 {
    adapter.create_sandbox(&CreateConfig::default()).await.unwrap();
  }
  let stopped = client.box_ids()[0].clone();
  adapter.sleep(&stopped).await.unwrap();
  let running: ListFilter = serde_json::from_value(json!({"state": "running"})).unwrap();
  assert_eq!(adapter.list_sandboxes(&running).await.unwrap().len(), 2);
  let both: ListFilter =
    serde_json::from_value(json!({"state": ["running", "stopped"], "limit": 2})).unwrap();
  assert_eq!(adapter.list_sandboxes(&both).await.unwrap().len(), 2);
  let only_stopped: ListFilter = serde_json::from_value(json!({"state": ["stopped"]})).unwrap();
  let listed = adapter.list_sandboxes(&only_stopped).await.unwrap();
  assert_eq!((listed.len(), listed[0].id.as_str()), (1, stopped.as_str()));
}

#[tokio::test]
async fn wake_resolves_when_the_box_runs_again() {
  let (adapter, client) = adapter_with(FakeClient::new().boot_polls(2));
  let id = adapter.create_sandbox(&CreateConfig::default()).await.unwrap().id;
  adapter.sleep(&id).await.unwrap();
  assert_eq!(adapter.get_sandbox(&id).await.unwrap().state, "stopped");
  adapter.wake(&id).await.unwrap();
  assert_eq!(client.status_of(&id), "running");
}

#[tokio::test]
async fn snapshot_of_a_running_box_stops_it_and_starts_it_again() {
  let (adapter, client) = adapter_with(FakeClient::new());
  let id = adapter.create_sandbox(&CreateConfig::default()).await.unwrap().id;
  assert_eq!(adapter.create_snapshot(&id, "snap-1").await.unwrap(), "snap-1");
  assert_eq!(client.snapshot_taken_while(&id), Some("stopped".to_string()));
  assert_eq!(client.status_of(&id), "running");
  adapter.restore_snapshot(&id, "snap-1").await.unwrap();
  assert_eq!(client.status_of(&id), "running");
}

#[tokio::test]
async fn exec_maps_a_client_timeout_to_an_exec_timeout() {
  let (adapter, _client) = adapter_with(FakeClient::new());
  let id = adapter.create_sandbox(&CreateConfig::default()).await.unwrap().id;
  let err = adapter
    .exec(
      &id,
      "sleep 10",
      &ExecOptions {
        timeout: Some(100.0),
        ..Default::default()
      },
    )
    .await
    .unwrap_err();
  assert_eq!(err.code(), "exec_timeout");
}

#[test]
fn a_command_killed_in_the_guest_at_its_deadline_is_an_exec_timeout_and_an_early_kill_is_not() {
  let killed = |code| {
    Ok(ExecOutput {
      exit_code: code,
      ..Default::default()
    })
  };
  let after = std::time::Duration::from_millis(700);
  for code in [-9, 137] {
    let err = exec_outcome(killed(code), 700, after).unwrap_err();
    assert_eq!(err.code(), "exec_timeout");
    assert_eq!(err.to_string(), "command timed out after 700 ms and was killed");
  }
  let early = std::time::Duration::from_millis(100);
  assert_eq!(exec_outcome(killed(-9), 700, early).unwrap().exit_code, -9);
  assert_eq!(exec_outcome(killed(1), 700, after).unwrap().exit_code, 1);
  let client_timeout = Err(crate::error::Error::Timeout {
    operation: "exec of 'bash'".into(),
    after_ms: 2700,
  });
  assert_eq!(
    exec_outcome(client_timeout, 700, after).unwrap_err().code(),
    "exec_timeout"
  );
}

#[tokio::test]
async fn expose_port_uses_the_mapping_and_the_api_host() {
  let (adapter, _client) = adapter_with(FakeClient::new());
  let id = adapter
    .create_sandbox(&config(json!({"ports": [[18080, 8080]]})))
    .await
    .unwrap()
    .id;
  assert_eq!(
    adapter.expose_port(&id, 8080, None).unwrap(),
    "http://api.example.com:18080"
  );
  assert_eq!(
    adapter.expose_port(&id, 3000, None).unwrap(),
    "http://api.example.com:3000"
  );
  assert_eq!(
    adapter.expose_port(&id, 3000, Some("10.0.0.5")).unwrap(),
    "http://10.0.0.5:3000"
  );
  assert!(adapter.expose_port(&id, 70000, None).is_err());
}
