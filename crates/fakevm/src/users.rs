//! Resolves an exec's `user` (`<name|uid>[:<group|gid>]`, as OCI runtimes take it) against the
//! box's own /etc/passwd and /etc/group.

use std::path::Path;

#[derive(Debug, PartialEq)]
pub struct User {
  pub uid: u32,
  pub gid: u32,
  pub groups: Vec<u32>,
  pub home: String,
}

fn read_table(root: &Path, file: &str) -> Vec<Vec<String>> {
  std::fs::read_to_string(root.join("etc").join(file))
    .unwrap_or_default()
    .lines()
    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    .map(|l| l.split(':').map(str::to_string).collect())
    .collect()
}

pub fn resolve(root: &Path, spec: &str) -> Result<User, String> {
  let spec = spec.trim();
  let (user_part, group_part) = match spec.split_once(':') {
    Some((u, g)) => (u, Some(g)),
    None => (spec, None),
  };
  let passwd = read_table(root, "passwd");
  let groups = read_table(root, "group");
  let entry = if user_part.is_empty() {
    passwd.iter().find(|e| e.get(2).map(String::as_str) == Some("0"))
  } else {
    passwd.iter().find(|e| {
      e.first().map(String::as_str) == Some(user_part) || e.get(2).map(String::as_str) == Some(user_part)
    })
  };
  let (uid, mut gid, name, home) = match entry {
    Some(e) if e.len() >= 6 => (
      e[2]
        .parse()
        .map_err(|_| format!("bad uid in /etc/passwd: {}", e[2]))?,
      e[3].parse().unwrap_or(0),
      e[0].clone(),
      e[5].clone(),
    ),
    _ => match user_part.parse::<u32>() {
      Ok(uid) => (uid, 0, String::new(), "/".to_string()),
      Err(_) if user_part.is_empty() => (0, 0, "root".into(), "/root".into()),
      Err(_) => {
        return Err(format!(
          "unable to find user {user_part}: no matching entries in passwd file"
        ))
      }
    },
  };
  if let Some(g) = group_part.filter(|g| !g.is_empty()) {
    gid = match groups.iter().find(|e| e.first().map(String::as_str) == Some(g)) {
      Some(e) => e
        .get(2)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("bad gid for group {g}"))?,
      None => g
        .parse()
        .map_err(|_| format!("unable to find group {g}: no matching entries in group file"))?,
    };
  }
  let mut supplementary = vec![gid];
  if !name.is_empty() && group_part.is_none() {
    for e in &groups {
      let members = e.get(3).map(String::as_str).unwrap_or("");
      if members.split(',').any(|m| m == name) {
        if let Some(g) = e.get(2).and_then(|v| v.parse().ok()) {
          if !supplementary.contains(&g) {
            supplementary.push(g);
          }
        }
      }
    }
  }
  Ok(User {
    uid,
    gid,
    groups: supplementary,
    home,
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  fn root() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fakevm-users-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
    std::fs::write(
      dir.join("etc/group"),
      "root:x:0:\nstaff:x:50:alice\nalice:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    dir
  }

  #[test]
  fn names_ids_and_groups_resolve_from_the_box_files() {
    let r = root();
    assert_eq!(resolve(&r, "").unwrap().uid, 0);
    let alice = resolve(&r, "alice").unwrap();
    assert_eq!(
      (alice.uid, alice.gid, alice.home.as_str()),
      (1000, 1000, "/home/alice")
    );
    assert_eq!(alice.groups, vec![1000, 50]);
    assert_eq!(resolve(&r, "65534").unwrap().home, "/nonexistent");
    assert_eq!(resolve(&r, "alice:staff").unwrap().gid, 50);
    assert_eq!(resolve(&r, "4242:4343").unwrap().gid, 4343);
    assert!(resolve(&r, "mallory")
      .unwrap_err()
      .contains("unable to find user mallory"));
    assert!(resolve(&r, "alice:nogrp")
      .unwrap_err()
      .contains("unable to find group"));
  }
}
