//! The network shapes of the current BoxLite REST API (boxlite serve 0.11): create passes a
//! per-direction `network` object through unchanged, and boxes whose answers carry
//! `network: {outbound: {mode, allow_net}, inbound: {…}}` (every box of serve 0.11) parse.

mod rest_common;

use boxlite_core::client::{BoxClient, CreateBoxParams};
use rest_common::*;
use serde_json::{json, Value};

async fn create_with(client: &boxlite_core::rest::RestClient, network: Value) -> String {
  let params = CreateBoxParams {
    image: Some("alpine:latest".into()),
    name: Some(unique("net")),
    network: Some(network),
    ..Default::default()
  };
  client.create_box(params).await.expect("createBox").id
}

#[tokio::test]
async fn current_dialect_boxes_with_per_direction_network_create_get_and_list() {
  let bed = Testbed::start(&["--dialect", "current", "--auth", "token", "--token", "t"]).await;
  let client = bed.client(json!({"dialect": "current"}));
  let nested = create_with(
    &client,
    json!({"outbound": {"mode": "disabled"}, "inbound": {"mode": "enabled"}}),
  )
  .await;
  let flat = create_with(&client, json!({"mode": "disabled"})).await;
  let legacy = create_with(&client, json!(false)).await;

  // What the server answers for each: per direction, whatever shape the request had.
  let http = reqwest::Client::new();
  for (id, outbound, inbound) in [
    (&nested, "disabled", "enabled"),
    (&flat, "disabled", "disabled"),
    (&legacy, "disabled", "disabled"),
  ] {
    let answer: Value = http
      .get(format!("{}/v1/boxes/{id}", bed.url))
      .bearer_auth("t")
      .send()
      .await
      .unwrap()
      .json()
      .await
      .unwrap();
    assert_eq!(answer["network"]["outbound"]["mode"], outbound, "{answer}");
    assert_eq!(answer["network"]["inbound"]["mode"], inbound, "{answer}");
    // ...and the adapter reads those boxes.
    let got = client.get_box(id).await.expect("getBox");
    assert_eq!(&got.id, id);
    assert_eq!(got.status, "configured");
  }
  let listed = client.list_boxes(None, None).await.expect("listBoxes");
  for id in [&nested, &flat, &legacy] {
    assert!(listed.iter().any(|b| &b.id == id), "{id} not in {listed:?}");
  }
}

#[tokio::test]
async fn sse_era_servers_get_the_outbound_part_of_a_per_direction_network() {
  let bed = Testbed::start(&["--dialect", "sse-ref"]).await;
  let client = bed.client(json!({}));
  let id = create_with(
    &client,
    json!({"outbound": {"mode": "disabled"}, "inbound": {"mode": "enabled"}}),
  )
  .await;
  assert_eq!(client.get_box(&id).await.expect("getBox").id, id);
  let creates: Vec<Value> = bed
    .requests()
    .await
    .into_iter()
    .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/boxes"))
    .collect();
  assert_eq!(creates.len(), 1, "{creates:?}");
  assert_eq!(creates[0]["status"], 201, "{creates:?}");
}
