//! A local stand-in for the AWS surfaces eic talks to (filled in by the stand-in issue).
