//! The journal of multi-step operations against AWS: what an operation is, the steps it goes
//! through and where it ends. Recorded before the first AWS call and after each step, so a crash
//! at any point is resumed or compensated (see `app::support::journal`).

use time::OffsetDateTime;

use super::{GroupId, KeyId, RotationPlan};

/// What the operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// ImportKey or CopyKey into AWS: a new EXTERNAL AWS key and the material imported into it.
    Import,
    /// RotateKey: a new AWS key takes over the aliases of the key (`key_id` is the old key).
    Rotate,
}

impl OpKind {
    pub const ALL: [OpKind; 2] = [Self::Import, Self::Rotate];

    /// The name the journal stores.
    pub fn name(self) -> &'static str {
        match self {
            Self::Import => "IMPORT",
            Self::Rotate => "ROTATE",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Where an operation stands. The steps come in this order; the last three end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpState {
    /// Intent recorded; no AWS call answered yet.
    Started,
    /// AWS created the new key (its id is in [`Operation::aws_key_id`]) and Keyward recorded it.
    AwsKeyCreated,
    /// Rotation: every alias of the plan targets the new key.
    AliasesMoved,
    /// Every step done.
    Done,
    /// Undone: what AWS made is scheduled for deletion.
    Compensated,
    /// Ended without anything in AWS to undo.
    Failed,
}

impl OpState {
    pub const ALL: [OpState; 6] =
        [Self::Started, Self::AwsKeyCreated, Self::AliasesMoved, Self::Done, Self::Compensated, Self::Failed];

    /// The states that end an operation; the worker's recovery looks at every other one.
    pub const TERMINAL: [OpState; 3] = [Self::Done, Self::Compensated, Self::Failed];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// The name the journal stores.
    pub fn name(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::AwsKeyCreated => "AWS_KEY_CREATED",
            Self::AliasesMoved => "ALIASES_MOVED",
            Self::Done => "DONE",
            Self::Compensated => "COMPENSATED",
            Self::Failed => "FAILED",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: uuid::Uuid,
    pub kind: OpKind,
    /// The group and key the operation is about (for an import: the virtual key being made).
    pub group_id: GroupId,
    pub key_id: KeyId,
    /// The AWS key the operation made, once AWS answered.
    pub aws_key_id: Option<String>,
    /// Every other key the operation touches (a rotation: the new key once recorded).
    pub subjects: Vec<(GroupId, KeyId)>,
    /// What a rotation executes (and executed), call by call.
    pub plan: Option<RotationPlan>,
    pub state: OpState,
    /// Why it ended as it did (secret-free, at most 500 characters).
    pub detail: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Operation {
    /// A new entry: the intent of `kind` on `key_id`, before any AWS call.
    pub fn start(kind: OpKind, group_id: GroupId, key_id: KeyId, now: OffsetDateTime) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            kind,
            group_id,
            key_id,
            aws_key_id: None,
            subjects: Vec::new(),
            plan: None,
            state: OpState::Started,
            detail: String::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Moves to the next step `to` (a non-terminal state after the current one). A terminal
    /// entry is final: nothing changes it again.
    pub fn advance(&mut self, to: OpState, now: OffsetDateTime) {
        let order = |s: OpState| OpState::ALL.iter().position(|x| *x == s);
        if !self.state.is_terminal() && !to.is_terminal() && order(to) > order(self.state) {
            self.state = to;
            self.updated_at = now;
        }
    }

    /// Every step done.
    pub fn finish(&mut self, now: OffsetDateTime) {
        self.end(OpState::Done, String::new(), now);
    }

    /// Undone: what AWS made is scheduled for deletion; `why` says what failed.
    pub fn compensate(&mut self, why: &str, now: OffsetDateTime) {
        self.end(OpState::Compensated, why.to_owned(), now);
    }

    /// Ended with nothing in AWS to undo; `why` says what failed.
    pub fn fail(&mut self, why: &str, now: OffsetDateTime) {
        self.end(OpState::Failed, why.to_owned(), now);
    }

    /// Keeps the entry open (a compensation AWS refused): recovery tries again later.
    pub fn note(&mut self, why: &str, now: OffsetDateTime) {
        if !self.state.is_terminal() {
            self.detail = why.chars().take(500).collect();
            self.updated_at = now;
        }
    }

    fn end(&mut self, state: OpState, why: String, now: OffsetDateTime) {
        if !self.state.is_terminal() {
            self.state = state;
            self.detail = why.chars().take(500).collect();
            self.updated_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_go_forward_and_terminal_states_are_final() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let mut op = Operation::start(OpKind::Import, GroupId::new(), KeyId::new(), t);
        op.advance(OpState::AwsKeyCreated, t);
        assert_eq!(op.state, OpState::AwsKeyCreated);
        op.advance(OpState::Started, t);
        assert_eq!(op.state, OpState::AwsKeyCreated, "no step back");
        op.advance(OpState::Done, t);
        assert_eq!(op.state, OpState::AwsKeyCreated, "advance never ends an entry");
        op.compensate(&"x".repeat(600), t);
        assert_eq!((op.state, op.detail.len()), (OpState::Compensated, 500));
        op.finish(t);
        op.fail("again", t);
        op.note("again", t);
        assert_eq!(op.state, OpState::Compensated, "terminal is final");
        for s in OpState::ALL {
            assert_eq!(OpState::from_name(s.name()), Some(s));
            assert_eq!(s.is_terminal(), matches!(s, OpState::Done | OpState::Compensated | OpState::Failed));
        }
    }
}
