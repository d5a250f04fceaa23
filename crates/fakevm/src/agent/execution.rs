//! `boxlite.v1` Execution for one box: exec, attach, stdin, wait, kill, tty resize.

#![allow(clippy::result_large_err)]

use super::{now_ms, Agent};
use boxlite_shared::{
  ExecError, ExecOutput, ExecRequest, ExecResponse, ExecStdin, KillRequest, KillResponse, ResizeTtyRequest,
  ResizeTtyResponse, SendInputAck, WaitRequest, WaitResponse,
};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};
type OutputStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

#[tonic::async_trait]
impl boxlite_shared::Execution for Agent {
  async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
    let req = request.into_inner();
    eprintln!(
      "boxlite-fakevm: box {}: exec {:?} {} {:?} (tty: {})",
      self.0.box_id,
      req.execution_id,
      req.program,
      req.args,
      req.tty.is_some()
    );
    let id = req
      .execution_id
      .clone()
      .filter(|s| !s.is_empty())
      .unwrap_or_else(|| self.0.next_exec_id());
    let tty = req.tty.as_ref().map(|t| {
      let or = |v: u32, d: u16| if v == 0 { d } else { v.min(u16::MAX as u32) as u16 };
      (
        or(t.rows, 24),
        or(t.cols, 80),
        or(t.x_pixels, 0),
        or(t.y_pixels, 0),
      )
    });
    let timeout = (req.timeout_ms > 0).then(|| Duration::from_millis(req.timeout_ms));
    let started_at_ms = now_ms();
    match self
      .0
      .launch(
        req.program.clone(),
        req.args.clone(),
        &req.env,
        &req.workdir,
        req.user.as_deref(),
        tty,
        timeout,
      )
      .await
    {
      Ok(e) => {
        let pid = e.box_pid as u32;
        self.0.execs.lock().unwrap().insert(id.clone(), e);
        Ok(Response::new(ExecResponse {
          execution_id: id,
          pid,
          started_at_ms,
          error: None,
        }))
      }
      Err(reason) => Ok(Response::new(ExecResponse {
        execution_id: id,
        pid: 0,
        started_at_ms,
        error: Some(ExecError {
          reason,
          detail: String::new(),
        }),
      })),
    }
  }

  type AttachStream = OutputStream;

  async fn attach(
    &self,
    request: Request<boxlite_shared::AttachRequest>,
  ) -> Result<Response<Self::AttachStream>, Status> {
    let e = self.0.exec(&request.into_inner().execution_id)?;
    let rx = e
      .attach()
      .ok_or_else(|| Status::failed_precondition("execution already attached"))?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Ok(Response::new(Box::pin(stream)))
  }

  async fn send_input(
    &self,
    request: Request<Streaming<ExecStdin>>,
  ) -> Result<Response<SendInputAck>, Status> {
    let mut stream = request.into_inner();
    let mut exec = None;
    while let Some(msg) = stream.message().await? {
      if exec.is_none() {
        exec = Some(self.0.exec(&msg.execution_id)?);
      }
      let e = exec.as_ref().expect("set above");
      if !msg.data.is_empty() {
        e.write_input(&msg.data).await.map_err(Status::internal)?;
      }
      if msg.close {
        e.close_input().await;
      }
    }
    Ok(Response::new(SendInputAck {}))
  }

  async fn wait(&self, request: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
    let e = self.0.exec(&request.into_inner().execution_id)?;
    let exit = e.wait().await;
    Ok(Response::new(WaitResponse {
      exit_code: exit.code,
      signal: exit.signal,
      timed_out: exit.timed_out,
      duration_ms: exit.duration.as_millis() as u64,
      error_message: String::new(),
    }))
  }

  async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
    let req = request.into_inner();
    let signal = if req.signal == 0 { 9 } else { req.signal };
    eprintln!(
      "boxlite-fakevm: box {}: kill {} signal {signal} (process group: {})",
      self.0.box_id, req.execution_id, req.process_group
    );
    let e = self.0.exec(&req.execution_id)?;
    Ok(Response::new(match e.kill(signal, req.process_group) {
      Ok(()) => KillResponse {
        success: true,
        error: None,
      },
      Err(err) => KillResponse {
        success: false,
        error: Some(err),
      },
    }))
  }

  async fn resize_tty(
    &self,
    request: Request<ResizeTtyRequest>,
  ) -> Result<Response<ResizeTtyResponse>, Status> {
    let req = request.into_inner();
    let e = self.0.exec(&req.execution_id)?;
    let c = |v: u32| v.min(u16::MAX as u32) as u16;
    Ok(Response::new(
      match e.resize(c(req.rows), c(req.cols), c(req.x_pixels), c(req.y_pixels)) {
        Ok(()) => ResizeTtyResponse {
          success: true,
          error: None,
        },
        Err(err) => ResizeTtyResponse {
          success: false,
          error: Some(err),
        },
      },
    ))
  }
}
