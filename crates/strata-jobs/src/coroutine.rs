//! A job's coroutine, stepped: from where it stands to its next yield, or
//! through one main-loop phase (`job_exit`, prepare, commit or abort,
//! clean, conclusion), calling its [`JobDriver`].
//!
//! Kept apart from [`JobCore`]'s state and transitions (job.rs) so that the
//! driver interface and the job state do not import each other.

use crate::driver::{JobDriver, RunStep};
use crate::error::{Error, ErrorKind, JobFailure, Result};
use crate::event::JobEvent;
use crate::job::{After, Co, JobCore, JobCtl, MainLoop, Resume};
use crate::status::JobStatus;

impl JobCore {
    // ---------------------------------------------------------------- stepping

    /// Runs the job from where it is to its next yield (or through one
    /// main-loop phase). The caller checked that it is runnable at `now_ns`.
    pub(crate) fn step<C, D: JobDriver<C> + ?Sized>(
        &mut self,
        driver: &mut D,
        ctx: &mut C,
        now_ns: u64,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        match self.co {
            Co::Sleeping { until, resume } if until <= now_ns => {
                // The sleep timer fires: job_enter.
                self.co = Co::Busy(resume);
                self.busy = true;
                self.run_coroutine(resume, driver, ctx, now_ns, events)
            }
            Co::InIo { until } if until <= now_ns => {
                self.run_coroutine(Resume::Continue(After::Run), driver, ctx, now_ns, events)
            }
            Co::Busy(resume) => self.run_coroutine(resume, driver, ctx, now_ns, events),
            Co::Freeing => {
                self.co = Co::Gone;
                Ok(())
            }
            Co::MainLoop(phase)
                if !matches!(phase, MainLoop::AwaitFinalize | MainLoop::AwaitDismiss) =>
            {
                self.main_loop_step(phase, driver, ctx, events)
            }
            _ => Err(Error::new(ErrorKind::NotRunnable(format!(
                "job '{}' waits ({:?}) at {now_ns} ns",
                self.id,
                self.next_wait()
            )))),
        }
    }

    /// Inside `run()`: non-yielding stretches of the core (pause points
    /// without a pause, restoring the status after a pause, the rate-limit
    /// loop) run in the same step, up to one driver call.
    fn run_coroutine<C, D: JobDriver<C> + ?Sized>(
        &mut self,
        mut resume: Resume,
        driver: &mut D,
        ctx: &mut C,
        now_ns: u64,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        loop {
            resume = match resume {
                Resume::PausePoint(after) => match self.pause_point(after, events)? {
                    Some(next) => next,
                    None => return Ok(()),
                },
                Resume::Unpause { status, after } => {
                    self.paused = false;
                    self.transition(status, events)?;
                    Resume::Continue(after)
                }
                Resume::Continue(After::Ratelimit { last_delay }) => {
                    if last_delay == 0 || self.force_cancel {
                        Resume::Continue(After::Run)
                    } else {
                        self.ratelimit_sleep(now_ns, events)?;
                        return Ok(());
                    }
                }
                Resume::Continue(After::Run) => {
                    return self.run_driver(driver, ctx, now_ns, events)
                }
            };
        }
    }

    fn run_driver<C, D: JobDriver<C> + ?Sized>(
        &mut self,
        driver: &mut D,
        ctx: &mut C,
        now_ns: u64,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        let step = {
            let mut ctl = JobCtl {
                core: self,
                events,
                now_ns,
                failure: None,
            };
            let step = driver.run_step(&mut ctl, ctx);
            if let Some(error) = ctl.failure.take() {
                return Err(error);
            }
            step
        };
        match step {
            RunStep::Continue => self.co = Co::Busy(Resume::Continue(After::Run)),
            RunStep::IoWait { until_ns } => self.co = Co::InIo { until: until_ns },
            RunStep::RatelimitSleep => self.ratelimit_sleep(now_ns, events)?,
            RunStep::Sleep(ns) => self.sleep_ns(ns, After::Run, now_ns, events)?,
            RunStep::Yield => self.job_yield(events)?,
            RunStep::PausePoint => {
                if let Some(next) = self.pause_point(After::Run, events)? {
                    self.co = Co::Busy(next);
                }
            }
            RunStep::Finished(result) => self.finish_run(result),
        }
        Ok(())
    }

    /// `job_co_entry` after `run()` returned: defer to the main loop.
    fn finish_run(&mut self, result: std::result::Result<(), JobFailure>) {
        if let Err(failure) = result {
            self.ret = Some(failure.errno);
            if self.error.is_none() {
                self.error = failure.message;
            }
        }
        self.deferred_to_main_loop = true;
        self.busy = true;
        self.co = Co::MainLoop(MainLoop::Exit);
    }

    /// One iteration of `block_job_ratelimit_sleep`'s loop.
    fn ratelimit_sleep(&mut self, now_ns: u64, events: &mut Vec<JobEvent>) -> Result<()> {
        let delay = self.limit.calculate_delay(0, now_ns);
        self.sleep_ns(
            delay,
            After::Ratelimit { last_delay: delay },
            now_ns,
            events,
        )
    }

    /// `job_sleep_ns`. If it does not yield (force-cancelled) the job stays
    /// runnable and continues with `after` at its next step.
    fn sleep_ns(
        &mut self,
        ns: u64,
        after: After,
        now_ns: u64,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        if self.force_cancel {
            self.co = Co::Busy(Resume::Continue(after));
        } else if self.pause_count == 0 {
            self.busy = false;
            self.co = Co::Sleeping {
                until: now_ns.saturating_add(ns),
                resume: Resume::PausePoint(after),
            };
        } else if let Some(next) = self.pause_point(after, events)? {
            self.co = Co::Busy(next);
        }
        Ok(())
    }

    /// `job_yield`.
    fn job_yield(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        if self.force_cancel {
            self.co = Co::Busy(Resume::Continue(After::Run));
        } else if self.pause_count == 0 {
            self.busy = false;
            self.co = Co::Yielded(Resume::PausePoint(After::Run));
        } else if let Some(next) = self.pause_point(After::Run, events)? {
            self.co = Co::Busy(next);
        }
        Ok(())
    }

    /// `job_pause_point`: `None` if the job paused (yielded), else where to
    /// go on.
    fn pause_point(&mut self, after: After, events: &mut Vec<JobEvent>) -> Result<Option<Resume>> {
        if self.pause_count == 0 || self.force_cancel {
            return Ok(Some(Resume::Continue(after)));
        }
        let status = self.status;
        let paused_status = if status == JobStatus::Ready {
            JobStatus::Standby
        } else {
            JobStatus::Paused
        };
        self.transition(paused_status, events)?;
        self.paused = true;
        self.busy = false;
        self.co = Co::Yielded(Resume::Unpause { status, after });
        Ok(None)
    }

    /// One main-loop phase: `job_exit`, prepare, commit/abort, clean, or
    /// the conclusion with its events.
    fn main_loop_step<C, D: JobDriver<C> + ?Sized>(
        &mut self,
        phase: MainLoop,
        driver: &mut D,
        ctx: &mut C,
        events: &mut Vec<JobEvent>,
    ) -> Result<()> {
        match phase {
            MainLoop::Exit => {
                self.busy = false;
                self.completed(events)
            }
            MainLoop::Prepare => {
                if self.ret.is_none() {
                    if let Err(failure) = driver.prepare(self, ctx) {
                        self.ret = Some(failure.errno);
                        if self.error.is_none() {
                            self.error = failure.message;
                        }
                    }
                    self.update_rc(events)?;
                }
                self.co = Co::MainLoop(MainLoop::Finish);
                Ok(())
            }
            MainLoop::Finish => {
                // job_finalize_single: late failures still abort.
                self.update_rc(events)?;
                if self.ret.is_none() {
                    driver.commit(self, ctx);
                } else {
                    driver.abort(self, ctx);
                }
                self.co = Co::MainLoop(MainLoop::Clean);
                Ok(())
            }
            MainLoop::Clean => {
                driver.clean(self, ctx);
                self.co = Co::MainLoop(MainLoop::Conclude);
                Ok(())
            }
            MainLoop::Conclude => {
                self.conclude(events)?;
                if self.co == Co::Gone && driver.free_closes_a_node(self, ctx) {
                    self.co = Co::Freeing;
                }
                Ok(())
            }
            MainLoop::AwaitFinalize | MainLoop::AwaitDismiss => unreachable!("checked by step"),
        }
    }

    /// The end of `job_finalize_single`: the block-job event (only if the
    /// job was started), `concluded`, and the dismiss unless manual.
    fn conclude(&mut self, events: &mut Vec<JobEvent>) -> Result<()> {
        if self.started && self.is_block_job() {
            let (offset, len) = self.progress();
            let (job_type, device, speed) = (self.job_type, self.id.clone(), self.speed);
            events.push(if self.force_cancel {
                JobEvent::BlockJobCancelled {
                    job_type,
                    device,
                    len,
                    offset,
                    speed,
                }
            } else {
                let error = self
                    .ret
                    .map(|errno| self.error.clone().unwrap_or_else(|| errno.strerror()));
                JobEvent::BlockJobCompleted {
                    job_type,
                    device,
                    len,
                    offset,
                    speed,
                    error,
                }
            });
        }
        self.transition(JobStatus::Concluded, events)?;
        if self.auto_dismiss || !self.started {
            self.dismiss(events)
        } else {
            self.co = Co::MainLoop(MainLoop::AwaitDismiss);
            Ok(())
        }
    }
}
