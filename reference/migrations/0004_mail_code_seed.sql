-- Single-use codes never rest in plaintext (issue 14, item 5). A queued mail's body holds a
-- placeholder where the code goes; the row keeps a random seed, and the code is
-- HMAC(pepper, seed), computed only when the mail is sent. The seed is cleared once it is.
ALTER TABLE mail_outbox ADD COLUMN code_seed TEXT;

-- Bodies of mail already sent by an earlier version still hold their codes in plaintext: they
-- are never read again, so they go.
UPDATE mail_outbox SET body_text = '' WHERE sent_at IS NOT NULL;
