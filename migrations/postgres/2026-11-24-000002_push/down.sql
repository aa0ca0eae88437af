DROP TABLE setting; DROP TABLE pushed_blob; DROP TABLE upload;
